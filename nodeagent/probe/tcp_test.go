package probe_test

import (
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/probe"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// acceptAll accepts and closes connections on l until it closes, counting them.
func acceptAll(l net.Listener) *atomic.Int32 {
	n := &atomic.Int32{}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	return n
}

// TestTCPSocketPassesWhileListeningAndFailsWhenClosed checks that a listening endpoint stays
// ready, turns not ready once nothing listens, and ready again when a listener returns.
func TestTCPSocketPassesWhileListeningAndFailsWhenClosed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := acceptAll(l)
	r := &reports{}
	addr, port := hostPort(t, l.Addr())
	startProber(t, r, probe.Options{}, &v1.HealthCheck{
		Action:        &v1.HealthCheck_TcpSocket{TcpSocket: &v1.TCPSocketAction{}},
		PeriodSeconds: 1, FailureThreshold: 2,
	}, addr, port)

	testwait.Eventually(t, "five accepted probes", func() bool { return accepted.Load() >= 5 })
	if got := r.list(); len(got) != 0 {
		t.Fatalf("a listening endpoint reported %v, want no transition", got)
	}

	l.Close()
	testwait.Eventually(t, "not ready", func() bool { return r.count() >= 1 })
	if got := r.list(); got[0].ready || !strings.Contains(got[0].why, "connection refused") {
		t.Fatalf("after closing the listener: %v, want not ready for a refused connection", got)
	}

	l, err = net.Listen("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	acceptAll(l)
	testwait.Eventually(t, "ready again", func() bool { return r.count() >= 2 })
	if got := r.list(); len(got) != 2 || !got[1].ready {
		t.Fatalf("after listening again: %v, want not ready then ready", got)
	}
}
