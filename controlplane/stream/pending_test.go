package stream

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// TestPendingRemovesAPortWhole reproduces the soak's race: an endpoint change marks a port's set
// dirty, then the service is deleted in the engine before the session has learnt of it. The
// update must remove the whole port, not only the set the still-held service uses.
func TestPendingRemovesAPortWhole(t *testing.T) {
	e := compute.NewEngine(compute.Options{})
	e.SetNode(&model.Node{Name: "n1", Ready: true})
	svc := &model.Service{Namespace: "default", Name: "x", Type: model.TypeClusterIP,
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.1")},
		Ports:      []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}}}
	e.SetService(svc)
	e.SetSlice(&model.EndpointSlice{Namespace: "default", Name: "x-1", Service: "x", Family: model.IPv4,
		Ports:     []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}},
		Endpoints: []model.Endpoint{{Address: netip.MustParseAddr("10.1.0.1"), Ready: true, Serving: true}}})
	never := func(string, string) bool { return false }

	// While the service lives, a dirty set is an upsert and nothing is removed.
	ups, rems, _ := pending(e, "n1", map[string]time.Time{"default/x:http/v4/cluster": time.Now()}, never)
	if len(ups) != 1 || len(rems) != 0 {
		t.Fatalf("service alive: %d upserts, removals %v; want the set and nothing removed", len(ups), rems)
	}
	e.DeleteService(model.ServiceKey{Namespace: "default", Name: "x"})
	_, rems, _ = pending(e, "n1", map[string]time.Time{"default/x:http/v4/cluster": time.Now()}, never)
	slices.Sort(rems)
	want := []string{"default/x:http/v4/cluster", "default/x:http/v4/service"}
	if !slices.Equal(rems, want) {
		t.Errorf("removals %v, want the set with its service %v", rems, want)
	}
}
