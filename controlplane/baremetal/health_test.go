package baremetal_test

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/probe"
	agentstream "github.com/ganglion-proxy/ganglion/nodeagent/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

var quiet = slog.New(slog.DiscardHandler)

func freeURL(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return "http://" + l.Addr().String()
}

// backendServer answers /healthz with whatever status is set, on addr.
func backendServer(t *testing.T, addr string) *atomic.Int32 {
	t.Helper()
	code := &atomic.Int32{}
	code.Store(200)
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(int(code.Load())) })}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return code
}

type testAgent struct {
	dp     *dataplane.Recording
	cancel context.CancelFunc
	done   chan struct{}
}

func startAgent(t *testing.T, node, brainAddr string) *testAgent {
	t.Helper()
	ta := &testAgent{dp: dataplane.NewRecording(), done: make(chan struct{})}
	var a *agentstream.Agent
	p := probe.New(func(r *v1.EndpointHealth) { a.ReportHealth(r) })
	a = agentstream.New(agentstream.Config{NodeName: node, Brains: []string{brainAddr}, Dataplane: ta.dp, Log: quiet,
		Node: &v1.NodeInfo{Zone: "z"}, Prober: p, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	ta.cancel = cancel
	go func() { defer close(ta.done); defer p.Close(); a.Run(ctx) }()
	t.Cleanup(ta.stop)
	return ta
}

func (a *testAgent) stop() {
	a.cancel()
	<-a.done
}

// backends returns the cluster set a node programs for default/web.
func (a *testAgent) backends() []string {
	var out []string
	for _, b := range a.dp.Ports()["default/web/v4"].Cluster.GetBackends() {
		out = append(out, b.Address)
	}
	return out
}

// TestHealthChecksAndNodeLeases runs the brain in bare-metal mode on an embedded etcd with two
// agents that probe their own backends: a failing HTTP check takes a backend out on every node and
// passing brings it back; an agent that goes away has its node's backends taken out once its
// lease expires, and they return when it comes back.
func TestHealthChecksAndNodeLeases(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t), Log: quiet, EtcdLogLevel: "panic"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	mem := &baremetal.Membership{Store: st, LeaseTTL: 2 * time.Second, Log: quiet}
	ctx, addr := startBareMetalBrain(t, st, mem)
	one := applyTwoNodeService(t, ctx, st,
		"  healthCheck: {httpGet: {path: /healthz}, periodSeconds: 1, failureThreshold: 2, successThreshold: 2}\n")
	a1 := startAgent(t, "n1", addr)
	a2 := startAgent(t, "n2", addr)
	both := func(a *testAgent) bool { return slices.Equal(a.backends(), []string{"127.0.0.1", "127.0.0.2"}) }
	onlyTwo := func(a *testAgent) bool { return slices.Equal(a.backends(), []string{"127.0.0.2"}) }
	testwait.Eventually(t, "both nodes forward to both backends", func() bool { return both(a1) && both(a2) })

	one.Store(500)
	took := testwait.Eventually(t, "the failing backend out on every node", func() bool { return onlyTwo(a1) && onlyTwo(a2) })
	t.Logf("backend removed everywhere %v after its check started failing (period 1s x failureThreshold 2)", took.Round(time.Millisecond))
	one.Store(200)
	took = testwait.Eventually(t, "the backend back on every node", func() bool { return both(a1) && both(a2) })
	t.Logf("backend back everywhere %v after its check passed again (successThreshold 2)", took.Round(time.Millisecond))

	a2.stop()
	took = testwait.Eventually(t, "n2's backend out once its lease expired", func() bool {
		return slices.Equal(a1.backends(), []string{"127.0.0.1"})
	})
	t.Logf("node n2's backend removed %v after its agent left (lease TTL 2s + grace 1s)", took.Round(time.Millisecond))
	a2 = startAgent(t, "n2", addr)
	testwait.Eventually(t, "n2's backend back with its agent", func() bool { return both(a1) && both(a2) })
}
