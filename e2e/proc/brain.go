package proc

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// Brain is a `ganglion-controlplane serve` process and the addresses it was given.
type Brain struct {
	*Proc
	// Addr is the gRPC address, as given to --listen.
	Addr string
	// Health serves /healthz and /readyz in plaintext; Metrics serves /metrics. Both are free
	// loopback ports: the defaults (:7072, 127.0.0.1:7071) would collide between tests that run
	// side by side.
	Health, Metrics string
}

// StartBrain runs the brain with its gRPC listener on listen and args after the listener flags.
func StartBrain(t testing.TB, listen string, args ...string) *Brain {
	t.Helper()
	b := &Brain{Addr: listen, Health: testenv.FreeAddr(t), Metrics: testenv.FreeAddr(t)}
	argv := []string{filepath.Join(Binaries(t), "ganglion-controlplane"), "serve",
		"--listen", listen, "--health-listen", b.Health, "--metrics-listen", b.Metrics}
	b.Proc = Start(t, append(argv, args...)...)
	return b
}

// EtcdArgs are the serve flags of the bare-metal source with its embedded etcd in dir, on free
// loopback ports so that brains of tests running side by side do not meet.
func EtcdArgs(t testing.TB, dir string) []string {
	t.Helper()
	return []string{"--source", "etcd", "--etcd-data-dir", filepath.Join(dir, "etcd"),
		"--etcd-listen-client", "http://" + testenv.FreeAddr(t), "--etcd-listen-peer", "http://" + testenv.FreeAddr(t)}
}

// WaitReady waits until the brain's /readyz answers 200: it listens, and its source is synced.
// A brain that exits meanwhile fails the test at once, with its output.
func (b *Brain) WaitReady(t testing.TB) {
	t.Helper()
	c := &http.Client{Timeout: 2 * time.Second}
	// An embedded etcd's first start fsyncs its way through a new data directory: on a busy
	// machine that is the slow part of every test here.
	EventuallyWithin(t, 2*time.Minute, "brain ready on "+b.Health, func() bool {
		if b.Exited() {
			t.Fatalf("brain exited before it was ready:\n%s", Tail(b.Output(), 4000))
		}
		resp, err := c.Get("http://" + b.Health + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}
