package stream_test

import (
	"context"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// checked fills the engine with a health-checked service whose two endpoints are on n1, so n1
// is told to probe them and its reports about them count.
func checked(e *compute.Engine) compute.Delta {
	var d compute.Delta
	d.Merge(e.SetService(&model.Service{
		Namespace: "default", Name: "web", Type: model.TypeClusterIP,
		ClusterIPs:  []netip.Addr{netip.MustParseAddr("10.96.1.1")},
		Ports:       []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}},
		HealthCheck: &model.HealthCheck{Action: model.ProbeTCPSocket},
	}))
	sl := &model.EndpointSlice{
		Namespace: "default", Name: "web-1", Service: "web", Family: model.IPv4,
		Ports: []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}},
	}
	for _, a := range []string{"10.1.0.1", "10.1.0.2"} {
		sl.Endpoints = append(sl.Endpoints, model.Endpoint{Address: netip.MustParseAddr(a), Ready: true, Serving: true, NodeName: "n1"})
	}
	d.Merge(e.SetSlice(sl))
	return d
}

func result(address string, ready bool) *v1.EndpointHealth {
	return &v1.EndpointHealth{Namespace: "default", Service: "web", Address: address, Ready: ready}
}

// slowStore is an OnHealth hook whose first call blocks until released, as a store that has
// become slow; it records every call.
type slowStore struct {
	released chan struct{}
	mu       sync.Mutex
	calls    [][]*v1.EndpointHealth
}

func (s *slowStore) onHealth(ctx context.Context, node string, results []*v1.EndpointHealth) {
	s.mu.Lock()
	s.calls = append(s.calls, slices.Clone(results))
	first := len(s.calls) == 1
	s.mu.Unlock()
	if first {
		<-s.released
	}
}

func (s *slowStore) delivered() [][]*v1.EndpointHealth {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.calls)
}

// TestSlowHealthStoreDoesNotHoldUpTheStream: while the store under OnHealth is stuck on one
// report, the agent's acknowledgements are taken and new updates reach it; the reports made
// meanwhile wait, one per endpoint, and what is handed over once the store is back is the newest
// result of each.
func TestSlowHealthStoreDoesNotHoldUpTheStream(t *testing.T) {
	store := &slowStore{released: make(chan struct{})}
	hub, addr := serve(t, stream.Options{Hooks: stream.Hooks{OnHealth: store.onHealth}}, checked)
	t.Cleanup(func() { close(store.released) }) // before the server stops, should the test fail first
	s := open(t, dial(t, addr)).hello(t, "n1")
	s.ack(t, s.update(t).Generation)

	s.report(t, result("10.1.0.1", false))
	testwait.Eventually(t, "the store busy with the first report", func() bool { return len(store.delivered()) == 1 })
	s.report(t, result("10.1.0.1", true), result("10.1.0.2", false))
	s.report(t, result("10.1.0.1", false))
	s.report(t, result("10.1.0.1", true))

	acked := func() uint64 { return hub.Sessions()["n1"].Acked }
	for i := range 2 {
		hub.Apply(time.Time{}, 0, func(e *compute.Engine) compute.Delta { return e.SetService(testService(i)) })
		u := s.update(t)
		s.ack(t, u.Generation)
		testwait.Eventually(t, "the acknowledgement taken while the store is stuck", func() bool { return acked() == u.Generation })
	}
	if n := len(store.delivered()); n != 1 {
		t.Fatalf("the store got %d calls while stuck in the first, want 1", n)
	}

	store.released <- struct{}{}
	testwait.Eventually(t, "the waiting reports handed over", func() bool { return len(store.delivered()) == 2 })
	want := []*v1.EndpointHealth{result("10.1.0.1", true), result("10.1.0.2", false)}
	if got := store.delivered()[1]; !slices.EqualFunc(got, want, sameResult) {
		t.Errorf("handed over %v once the store was back, want the newest of each endpoint: %v", got, want)
	}
	if n := testutil.ToFloat64(hub.Metrics().HealthReplaced); n != 2 {
		t.Errorf("%v results replaced by newer ones, want 2", n)
	}
}

func sameResult(a, b *v1.EndpointHealth) bool {
	return a.Namespace == b.Namespace && a.Service == b.Service && a.Address == b.Address && a.Ready == b.Ready
}
