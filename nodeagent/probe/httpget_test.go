package probe_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/probe"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// recordingServer answers with code and keeps the Host and request URI of every request.
type recordingServer struct {
	*httptest.Server
	mu   sync.Mutex
	seen []string // "host requestURI"
}

func newRecordingServer(t *testing.T, h http.HandlerFunc) *recordingServer {
	t.Helper()
	s := &recordingServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		s.seen = append(s.seen, req.Host+" "+req.RequestURI)
		s.mu.Unlock()
		h(w, req)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *recordingServer) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func httpCheck(path string) *v1.HealthCheck {
	return &v1.HealthCheck{Action: &v1.HealthCheck_HttpGet{HttpGet: &v1.HTTPGetAction{Path: path}},
		PeriodSeconds: 1, FailureThreshold: 3}
}

// TestHTTPGetPathNeverNamesAnotherHost checks that a path that is not a plain absolute path fails
// the check without any request: neither the endpoint nor the host the path names hears of it,
// and the refusal is logged once, not every period.
func TestHTTPGetPathNeverNamesAnotherHost(t *testing.T) {
	other := newRecordingServer(t, func(w http.ResponseWriter, _ *http.Request) {})
	otherHost := other.Listener.Addr().String()
	for _, path := range []string{
		"@" + otherHost,
		"@" + otherHost + "/healthz",
		"//" + otherHost + "/x",
		"http://" + otherHost + "/",
		"https://" + otherHost + "/",
		"healthz",
		"?q=1",
		"/healthz#frag",
		"/healthz\r\nHost: " + otherHost,
		"/healthz\x00",
	} {
		t.Run(path, func(t *testing.T) {
			endpoint := newRecordingServer(t, func(w http.ResponseWriter, _ *http.Request) {})
			r := &reports{}
			addr, port := hostPort(t, endpoint.Listener.Addr())
			logs := startProber(t, r, probe.Options{}, httpCheck(path), addr, port)
			testwait.Eventually(t, "not ready", func() bool { return r.count() >= 1 })
			if got := r.list(); got[0].ready {
				t.Fatalf("reports %v, want not ready", got)
			}
			if got := endpoint.requests(); len(got) != 0 {
				t.Errorf("endpoint received %q, want nothing", got)
			}
			if got := other.requests(); len(got) != 0 {
				t.Errorf("other host received %q, want nothing", got)
			}
			if n := strings.Count(logs.String(), "health check refused"); n != 1 {
				t.Errorf("refusal logged %d times over 3 periods, want once:\n%s", n, logs)
			}
		})
	}
}

// TestHTTPGetSendsPathAndQueryToTheEndpoint checks that an ordinary path reaches the endpoint as
// sent, with the endpoint's own address as Host, and that a redirect elsewhere is not followed
// (a 3xx passes, as with the kubelet).
func TestHTTPGetSendsPathAndQueryToTheEndpoint(t *testing.T) {
	other := newRecordingServer(t, func(w http.ResponseWriter, _ *http.Request) {})
	endpoint := newRecordingServer(t, func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, other.URL+"/stolen", http.StatusFound)
	})
	r := &reports{}
	addr, port := hostPort(t, endpoint.Listener.Addr())
	startProber(t, r, probe.Options{}, httpCheck("/ready/a%2Fb?verbose=1&x=%20"), addr, port)
	testwait.Eventually(t, "three probes", func() bool { return len(endpoint.requests()) >= 3 })
	want := endpoint.Listener.Addr().String() + " /ready/a%2Fb?verbose=1&x=%20"
	for _, got := range endpoint.requests() {
		if got != want {
			t.Fatalf("endpoint received %q, want %q", got, want)
		}
	}
	if got := other.requests(); len(got) != 0 {
		t.Errorf("redirect target received %q, want nothing", got)
	}
	if got := r.list(); len(got) != 0 {
		t.Errorf("reports %v, want none: a redirect passes", got)
	}
}

// TestHTTPGetRefusesAHostName checks that an endpoint address that is a name, which would be
// resolved and could resolve anywhere, fails without a lookup or a request.
func TestHTTPGetRefusesAHostName(t *testing.T) {
	endpoint := newRecordingServer(t, func(w http.ResponseWriter, _ *http.Request) {})
	_, port := hostPort(t, endpoint.Listener.Addr())
	r := &reports{}
	logs := startProber(t, r, probe.Options{}, httpCheck("/healthz"), "localhost", port)
	testwait.Eventually(t, "not ready", func() bool { return r.count() >= 1 })
	if got := endpoint.requests(); len(got) != 0 {
		t.Errorf("endpoint received %q, want nothing", got)
	}
	if !strings.Contains(logs.String(), "not an IP address") {
		t.Errorf("log does not say why:\n%s", logs)
	}
}
