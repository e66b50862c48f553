package kubernetes

import (
	"log/slog"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
)

func newHandlers() (*handlers, *stream.Hub) {
	hub := stream.NewHub(compute.NewEngine(compute.Options{}), stream.Options{}, stream.NewMetrics(prometheus.NewRegistry()))
	return &handlers{hub: hub, log: slog.New(slog.DiscardHandler)}, hub
}

// backends counts the backends node-1 is given for the service "web", over every endpoint set.
func backends(hub *stream.Hub) int {
	n := 0
	hub.View(func(e *compute.Engine) {
		for _, r := range e.NodeState("node-1") {
			if es := r.Msg.GetEndpoints(); es != nil {
				n += len(es.Backends)
			}
		}
	})
	return n
}

func TestSliceEventsReachTheModel(t *testing.T) {
	h, hub := newHandlers()
	h.services().OnAdd(service("web", nil, "5"), true)
	sl := slice("web", "")
	h.slices().OnAdd(sl, true)
	if got := backends(hub); got == 0 {
		t.Fatal("a slice's endpoint is not a backend")
	}

	// A slice can become one the proxy does not use (FQDN); it must then stop counting.
	fqdn := sl.DeepCopy()
	fqdn.AddressType = discoveryv1.AddressTypeFQDN
	fqdn.ResourceVersion = "9"
	h.slices().OnUpdate(sl, fqdn)
	if got := backends(hub); got != 0 {
		t.Fatalf("backends after the slice turned FQDN = %d, want 0", got)
	}
	if got := hub.Revision(); got != 9 {
		t.Errorf("revision = %d, want 9 (the update's resourceVersion)", got)
	}

	h.slices().OnUpdate(fqdn, sl)
	if backends(hub) == 0 {
		t.Fatal("slice back to IPv4 is not used again")
	}
	// Deleted while the watch was down: the informer hands over a tombstone.
	h.slices().OnDelete(cache.DeletedFinalStateUnknown{Key: "default/web-1", Obj: sl})
	if got := backends(hub); got != 0 {
		t.Fatalf("backends after a tombstoned delete = %d, want 0", got)
	}
}

func TestServiceTombstoneRemovesTheService(t *testing.T) {
	h, hub := newHandlers()
	svc := service("web", nil, "5")
	h.services().OnAdd(svc, true)
	h.services().OnDelete(cache.DeletedFinalStateUnknown{Key: "default/web", Obj: svc})
	if hasService(hub, "web") {
		t.Fatal("service still in the model after a tombstoned delete")
	}
	if got := hub.Revision(); got != 5 {
		t.Errorf("revision = %d, want 5: a revision never moves back", got)
	}
}

func TestParseRV(t *testing.T) {
	for in, want := range map[string]uint64{"": 0, "42": 42, "not-a-number": 0, "18446744073709551615": 1<<64 - 1} {
		if got := parseRV(in); got != want {
			t.Errorf("parseRV(%q) = %d, want %d", in, got, want)
		}
	}
}
