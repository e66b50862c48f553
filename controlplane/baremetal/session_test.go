package baremetal

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// checked is a health-checked service with a backend on each node of base.
var checked = native(`  vips: [10.0.0.40]
  ports: [{port: 80, targetPort: 8080}]
  healthCheck: {tcpSocket: {}}
  backends: [{address: 10.1.0.5, node: n1}, {address: 10.1.0.6, node: n2}]
`)

const (
	bothUp     = "internal=cluster FORWARD 10.1.0.5:8080 10.1.0.6:8080"
	onlySecond = "internal=cluster FORWARD 10.1.0.6:8080"
	onlyFirst  = "internal=cluster FORWARD 10.1.0.5:8080"
)

// healthWorld is a store holding base and checked, a hub the source feeds from it, and the
// membership agents' streams would call.
func healthWorld(t *testing.T) (*store.Store, *stream.Hub, *Membership) {
	t.Helper()
	st := openStore(t)
	if _, err := applyYAML(t, st, base+"---\n"+checked); err != nil {
		t.Fatal(err)
	}
	hub := stream.NewHub(compute.NewEngine(compute.Options{}), stream.Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go (&Source{Store: st, Grace: time.Minute}).Run(ctx, hub, hub.MarkSynced)
	waitSummary(t, hub, "n1", "default/web/v4", bothUp)
	return st, hub, &Membership{Store: st, LeaseTTL: time.Second, Log: slog.New(slog.DiscardHandler)}
}

// agentStream is one agent stream as the hooks see it: its context names the session, and
// cancelling it ends the stream.
type agentStream struct {
	ctx context.Context
	end context.CancelFunc
}

// newStream is a stream whose hello has not reached OnConnect yet.
func newStream(t *testing.T) agentStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return agentStream{ctx: ctx, end: cancel}
}

// connect runs OnConnect for s as the stream does (on its own goroutine) and returns s.
func (s agentStream) connect(m *Membership, node string) agentStream {
	go m.Hooks().OnConnect(s.ctx, &v1.Hello{NodeName: node, Node: &v1.NodeInfo{}})
	return s
}

// connect starts node's session as its agent's stream would.
func connect(t *testing.T, m *Membership, node string) agentStream {
	t.Helper()
	return newStream(t).connect(m, node)
}

// report sends a health report on the stream s, for the web service's backends at addresses;
// it returns once the report is stored or dropped.
func (s agentStream) report(m *Membership, node string, ready bool, addresses ...string) {
	var rs []*v1.EndpointHealth
	for _, a := range addresses {
		rs = append(rs, &v1.EndpointHealth{Namespace: "default", Service: "web", Address: a, Ready: ready})
	}
	m.Hooks().OnHealth(s.ctx, node, rs)
}

// TestHealthRecordEndsWithItsSession: a failing report is undone when the session that made it
// ends (its lease expires), not kept for good: a reporter that connected once, or an agent that
// restarted, does not leave a backend out.
func TestHealthRecordEndsWithItsSession(t *testing.T) {
	_, hub, m := healthWorld(t)
	s := connect(t, m, "n1")
	s.report(m, "n1", false, "10.1.0.5")
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)
	s.end()
	waitSummary(t, hub, "n2", "default/web/v4", bothUp)
}

// TestRecreatedServiceStartsHealthy: deleting a service deletes its health records, so the same
// service applied again uses all its backends, though the reporting session is still up.
func TestRecreatedServiceStartsHealthy(t *testing.T) {
	st, hub, m := healthWorld(t)
	connect(t, m, "n1").report(m, "n1", false, "10.1.0.5")
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)
	if err := Delete(context.Background(), st, []store.Key{{Kind: KindService, Namespace: "default", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, hub, "n2", "default/web/v4", "")
	if _, err := applyYAML(t, st, checked); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, hub, "n2", "default/web/v4", bothUp)
}

// TestHealthFromAnotherNodeIsIgnored: n2 reports n1's backend failing, and its own; only its own
// counts (the stream drops such reports before; the store must not trust them either).
func TestHealthFromAnotherNodeIsIgnored(t *testing.T) {
	_, hub, m := healthWorld(t)
	connect(t, m, "n2").report(m, "n2", false, "10.1.0.5", "10.1.0.6") // in order: once 10.1.0.6 is out, 10.1.0.5 was seen
	waitSummary(t, hub, "n1", "default/web/v4", onlyFirst)
}

// TestHealthWithoutASessionIsDropped: a report from a node that holds no session lease is not
// stored, since nothing would end it.
func TestHealthWithoutASessionIsDropped(t *testing.T) {
	_, hub, m := healthWorld(t)
	newStream(t).report(m, "n1", false, "10.1.0.5") // returns once dropped, after waiting for a session
	connect(t, m, "n2").report(m, "n2", false, "10.1.0.6")
	waitSummary(t, hub, "n1", "default/web/v4", onlyFirst)
}
