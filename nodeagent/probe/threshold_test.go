package probe_test

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/probe"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// scriptedServer answers its n-th request with codes[n], and the last code after that.
type scriptedServer struct {
	mu    sync.Mutex
	codes []int
	got   int
}

func (s *scriptedServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	code := s.codes[min(s.got, len(s.codes)-1)]
	s.got++
	s.mu.Unlock()
	w.WriteHeader(code)
}

func (s *scriptedServer) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got
}

// TestThresholdsCountConsecutiveProbes checks that an endpoint turns not ready on exactly the
// failureThreshold-th failure in a row, and ready again on exactly the successThreshold-th pass
// in a row, by the number of requests the endpoint had received when each transition was reported.
func TestThresholdsCountConsecutiveProbes(t *testing.T) {
	const ok, bad = http.StatusOK, http.StatusInternalServerError
	for _, tc := range []struct {
		name                string
		failure, success    uint32
		codes               []int
		notReadyAt, readyAt int // request count at each transition
	}{
		{name: "defaults 3 and 1", codes: []int{bad, bad, bad, ok}, notReadyAt: 3, readyAt: 4},
		{name: "failure 1", failure: 1, success: 1, codes: []int{bad, ok}, notReadyAt: 1, readyAt: 2},
		{name: "a pass resets the failures", failure: 3, success: 2,
			codes: []int{bad, bad, ok, bad, bad, ok, bad, bad, bad, ok, bad, ok, ok}, notReadyAt: 9, readyAt: 13},
		{name: "redirects pass", failure: 2, success: 1,
			codes: []int{bad, bad, http.StatusFound}, notReadyAt: 2, readyAt: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &scriptedServer{codes: tc.codes}
			ts := httptest.NewServer(srv)
			defer ts.Close()
			r := &reports{at: srv.requests}
			addr, port := hostPort(t, ts.Listener.Addr())
			startProber(t, r, probe.Options{}, &v1.HealthCheck{
				Action:        &v1.HealthCheck_HttpGet{HttpGet: &v1.HTTPGetAction{Path: "/healthz"}},
				PeriodSeconds: 1, FailureThreshold: tc.failure, SuccessThreshold: tc.success,
			}, addr, port)
			testwait.Eventually(t, "two transitions", func() bool { return r.count() >= 2 })
			// A few more periods of passes must not report again.
			after := srv.requests()
			testwait.Eventually(t, "more probes", func() bool { return srv.requests() >= after+3 })
			got := r.list()
			want := []report{{ready: false, at: tc.notReadyAt, why: "HTTP 500"}, {ready: true, at: tc.readyAt}}
			if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
				t.Fatalf("transitions (ready, requests so far) = %v, want %v", got, want)
			}
		})
	}
}

// TestChangedCheckGoesOnFromTheLastResult checks that a worker restarted because its check
// changed starts from the endpoint's last result: a not-ready endpoint that passes the new check
// is reported ready, so the brain's not-ready record is cleared.
func TestChangedCheckGoesOnFromTheLastResult(t *testing.T) {
	srv := &scriptedServer{codes: []int{http.StatusInternalServerError}}
	ts := httptest.NewServer(srv)
	defer ts.Close()
	addr, port := hostPort(t, ts.Listener.Addr())
	r := &reports{}
	p := probe.New(r.add)
	p.SetTick(tick)
	t.Cleanup(p.Close)
	set := func(path string) {
		p.Update([]*v1.ProbeSet{{Namespace: "default", Service: "web", Targets: []*v1.ProbeTarget{{Address: addr, Port: uint32(port)}},
			Check: &v1.HealthCheck{Action: &v1.HealthCheck_HttpGet{HttpGet: &v1.HTTPGetAction{Path: path}}, PeriodSeconds: 1, FailureThreshold: 1}}})
	}
	set("/healthz")
	testwait.Eventually(t, "not ready", func() bool { return r.count() == 1 })
	srv.mu.Lock()
	srv.codes = []int{http.StatusOK}
	srv.mu.Unlock()
	set("/ready")
	testwait.Eventually(t, "ready after the check changed", func() bool { return r.count() == 2 })
	if got := r.list(); got[0].ready || !got[1].ready {
		t.Errorf("transitions %v, want not ready then ready", got)
	}
}
