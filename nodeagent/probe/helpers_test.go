package probe_test

import (
	"bytes"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/nodeagent/probe"
	"github.com/ganglion-proxy/ganglion/nodeagent/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

var _ stream.Prober = (*probe.Prober)(nil)

// tick is one period second in these tests: short, so a threshold of a few periods passes fast.
const tick = 10 * time.Millisecond

// reports records the prober's transitions, each with what the test's servers had seen when it
// was reported (the worker reports right after the probe that decided it, before the next).
type reports struct {
	mu   sync.Mutex
	seen []report
	at   func() int // what to record beside each transition, e.g. requests received so far
}

type report struct {
	ready bool
	at    int
	why   string // the reported reason of a failure
}

func (r *reports) add(h *v1.EndpointHealth) {
	r.mu.Lock()
	defer r.mu.Unlock()
	at := 0
	if r.at != nil {
		at = r.at()
	}
	r.seen = append(r.seen, report{ready: h.Ready, at: at, why: h.Message})
}

func (r *reports) list() []report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]report(nil), r.seen...)
}

// count returns how many transitions have been reported.
func (r *reports) count() int { return len(r.list()) }

// syncBuffer is a log sink tests read while workers write.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startProber returns a prober with a short tick that probes one endpoint with hc, and its log.
func startProber(t *testing.T, r *reports, opts probe.Options, hc *v1.HealthCheck, addr string, port int) *syncBuffer {
	t.Helper()
	logs := &syncBuffer{}
	opts.Log = slog.New(slog.NewTextHandler(logs, nil))
	p := probe.New(r.add, opts)
	p.SetTick(tick)
	t.Cleanup(p.Close)
	p.Update([]*v1.ProbeSet{{Namespace: "default", Service: "web", Check: hc,
		Targets: []*v1.ProbeTarget{{Address: addr, Port: uint32(port)}}}})
	return logs
}

// hostPort splits a listener's address into what a probe target holds.
func hostPort(t *testing.T, addr net.Addr) (string, int) {
	t.Helper()
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return host, n
}
