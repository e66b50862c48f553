package stream_test

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

// The failover tests run real brains and real agents over gRPC on loopback, as the brain's own
// stream tests do: what is under test is how an agent picks and leaves replicas.

var quiet = slog.New(slog.DiscardHandler)

// services is how many services every test brain holds: enough for a state, small for speed.
const services = 5

// replica is one brain serving on loopback.
type replica struct {
	*brain.Brain
	addr string
}

// listeners returns n loopback listeners. Their addresses decide a node's order (stream.Order),
// so a test can choose which brain serves where before any of them starts.
func listeners(t *testing.T, n int) []net.Listener {
	t.Helper()
	out := make([]net.Listener, n)
	for i := range out {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		out[i] = lis
	}
	return out
}

func addrs(ls []net.Listener) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Addr().String()
	}
	return out
}

// serve runs a brain on lis holding the same services at source revision 1 as every other test
// brain, so an agent can move between them. A brain not marked synced holds every stream
// unanswered and says NOT_SERVING, as one whose sources are still loading.
func serve(t *testing.T, lis net.Listener, synced bool) *replica {
	t.Helper()
	b, err := brain.New(brain.Options{Log: quiet, Auth: auth.Config{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	b.Hub.Apply(time.Time{}, 1, func(e *compute.Engine) compute.Delta {
		var d compute.Delta
		for i := range services {
			d.Merge(e.SetSlice(testSlice(i)))
			d.Merge(e.SetService(testService(i)))
		}
		return d
	})
	if synced {
		b.MarkSynced()
	}
	go b.Serve(lis)
	t.Cleanup(b.Stop)
	return &replica{Brain: b, addr: lis.Addr().String()}
}

func testService(i int) *model.Service {
	return &model.Service{
		Namespace: "default", Name: fmt.Sprintf("svc-%d", i), Type: model.TypeClusterIP,
		ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 0, byte(i)})},
		Ports:      []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}},
	}
}

func testSlice(i int) *model.EndpointSlice {
	return &model.EndpointSlice{
		Namespace: "default", Name: fmt.Sprintf("svc-%d-1", i), Service: fmt.Sprintf("svc-%d", i), Family: model.IPv4,
		Ports: []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}},
		Endpoints: []model.Endpoint{{Address: netip.AddrFrom4([4]byte{10, 64, 0, byte(i)}), Ready: true, Serving: true,
			NodeName: "node-0"}},
	}
}

// snapshots counts the streams r has started serving: one per agent that connected to it.
func (r *replica) snapshots() int { return int(testutil.ToFloat64(r.Hub.Metrics().Snapshots)) }

// holds reports whether the agent holds exactly what r wants for node.
func (r *replica) holds(a *stream.Agent, node string) bool {
	want := map[string]string{}
	r.Hub.View(func(e *compute.Engine) { e.ForEach(node, func(c *compute.Resource) { want[c.Name] = c.Version }) })
	return maps.Equal(a.Held(), want)
}

// fast are agent timings short enough for tests; the negative assertions' windows derive from
// them (window). The first-message bound stays generous: on a loaded machine a brain slower than
// it would send an agent to its next choice and muddle what a test counts.
var fast = stream.Config{
	BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	FirstUpdateTimeout: time.Second, ReturnAfter: 200 * time.Millisecond,
}

// startAgent runs node's agent with the fast timings over a recording dataplane until the test
// ends.
func startAgent(t *testing.T, node string, brains []string, more ...func(*stream.Config)) *stream.Agent {
	cfg := fast
	cfg.NodeName, cfg.AgentVersion, cfg.Brains, cfg.Log = node, "test", brains, quiet
	cfg.Dataplane = dataplane.NewRecording()
	for _, f := range more {
		f(&cfg)
	}
	a := stream.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return a
}

// window is longer than anything that could still move an agent when a negative assertion
// starts: its longest backoff (with the floor of its jitter), its longest first-message wait and
// its longest stay on a fallback before it looks back, twice over.
func window() time.Duration {
	return 2 * (fast.BackoffMax + fast.BackoffMin/2 + fast.FirstUpdateTimeout + 3*fast.ReturnAfter/2)
}

// hangGuard bounds every wait: far above what any test needs; not a performance assertion.
const hangGuard = 20 * time.Second

// holdsThroughout checks that holds is true at every poll for at least window() and until
// attempted says that what could break it has been tried: checked once, soon after the event, a
// negative assertion passes whether or not the event could have happened yet.
func holdsThroughout(t *testing.T, what string, attempted, holds func() bool) {
	t.Helper()
	for start := time.Now(); time.Since(start) < window() || !attempted(); time.Sleep(5 * time.Millisecond) {
		if !holds() {
			t.Fatalf("%s: broken after %s", what, time.Since(start).Round(time.Millisecond))
		}
		if time.Since(start) > hangGuard {
			t.Fatalf("%s: held for %s, but too few attempts were made to tell", what, hangGuard)
		}
	}
	if !holds() {
		t.Fatalf("%s: broken at the end", what)
	}
}
