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

// connect starts node's session as its agent's stream would; cancelling the context ends it.
func connect(t *testing.T, m *Membership, node string) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go m.Hooks().OnConnect(ctx, &v1.Hello{NodeName: node, Node: &v1.NodeInfo{}})
	return cancel
}

func report(m *Membership, node string, ready bool, addresses ...string) {
	var rs []*v1.EndpointHealth
	for _, a := range addresses {
		rs = append(rs, &v1.EndpointHealth{Namespace: "default", Service: "web", Address: a, Ready: ready})
	}
	m.Hooks().OnHealth(node, rs)
}

// TestHealthRecordEndsWithItsSession: a failing report is undone when the session that made it
// ends (its lease expires), not kept for good: a reporter that connected once, or an agent that
// restarted, does not leave a backend out.
func TestHealthRecordEndsWithItsSession(t *testing.T) {
	_, hub, m := healthWorld(t)
	end := connect(t, m, "n1")
	report(m, "n1", false, "10.1.0.5")
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)
	end()
	waitSummary(t, hub, "n2", "default/web/v4", bothUp)
}

// TestRecreatedServiceStartsHealthy: deleting a service deletes its health records, so the same
// service applied again uses all its backends, though the reporting session is still up.
func TestRecreatedServiceStartsHealthy(t *testing.T) {
	st, hub, m := healthWorld(t)
	connect(t, m, "n1")
	report(m, "n1", false, "10.1.0.5")
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
	connect(t, m, "n2")
	report(m, "n2", false, "10.1.0.5", "10.1.0.6") // in order: once 10.1.0.6 is out, 10.1.0.5 was seen
	waitSummary(t, hub, "n1", "default/web/v4", onlyFirst)
}

// TestHealthWithoutASessionIsDropped: a report from a node that holds no session lease is not
// stored, since nothing would end it.
func TestHealthWithoutASessionIsDropped(t *testing.T) {
	_, hub, m := healthWorld(t)
	report(m, "n1", false, "10.1.0.5") // returns once dropped, after waiting for a session
	connect(t, m, "n2")
	report(m, "n2", false, "10.1.0.6")
	waitSummary(t, hub, "n1", "default/web/v4", onlyFirst)
}
