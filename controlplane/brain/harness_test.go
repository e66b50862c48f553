package brain_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	agentstream "github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

var quiet = slog.New(slog.DiscardHandler)

// testService is service i: ClusterIP 10.96.x.y, port http 80 -> 8080.
func testService(i int) *model.Service {
	return &model.Service{
		Namespace: "default", Name: fmt.Sprintf("svc-%d", i), Type: model.TypeClusterIP,
		ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
		Ports:      []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}},
	}
}

// testSlice is service i's endpoints: n ready endpoints on node-0..node-2; version v shifts the
// ports so that every version has different content.
func testSlice(i, n, v int) *model.EndpointSlice {
	sl := &model.EndpointSlice{
		Namespace: "default", Name: fmt.Sprintf("svc-%d-1", i), Service: fmt.Sprintf("svc-%d", i), Family: model.IPv4,
		Ports: []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: uint16(8080 + v)}},
	}
	for j := range n {
		sl.Endpoints = append(sl.Endpoints, model.Endpoint{
			Address: netip.AddrFrom4([4]byte{10, byte(64 + i>>8), byte(i), byte(j)}),
			Ready:   true, Serving: true, NodeName: fmt.Sprintf("node-%d", j%3),
		})
	}
	return sl
}

// startBrain serves a brain with services 0..services-1 on loopback, without TLS.
func startBrain(t *testing.T, services, endpoints int, opts stream.Options) (*brain.Brain, string) {
	t.Helper()
	return startBrainWith(t, services, endpoints, opts, auth.Config{Insecure: true})
}

// startBrainWith is startBrain with the brain's authentication.
func startBrainWith(t *testing.T, services, endpoints int, opts stream.Options, authCfg auth.Config) (*brain.Brain, string) {
	t.Helper()
	if opts.MaxDelay == 0 {
		opts.MaxDelay = 20 * time.Millisecond // tests wait less than agents in production
	}
	b, err := brain.New(brain.Options{Stream: opts, Log: quiet, Auth: authCfg})
	if err != nil {
		t.Fatal(err)
	}
	b.Hub.Apply(time.Time{}, 1, func(e *compute.Engine) compute.Delta {
		var d compute.Delta
		for i := range services {
			d.Merge(e.SetSlice(testSlice(i, endpoints, 0)))
			d.Merge(e.SetService(testService(i)))
		}
		return d
	})
	b.MarkSynced()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go b.Serve(lis)
	t.Cleanup(b.Stop)
	return b, lis.Addr().String()
}

// setSlice changes service i's endpoints in b.
func setSlice(b *brain.Brain, i, n, v int) {
	b.Hub.Apply(time.Time{}, 0, func(e *compute.Engine) compute.Delta { return e.SetSlice(testSlice(i, n, v)) })
}

// runningAgent is an agent whose Run can be stopped and started again with its state kept.
type runningAgent struct {
	*agentstream.Agent
	cfg  agentstream.Config
	dp   *dataplane.Recording
	stop context.CancelFunc
	done chan struct{}
}

func newAgent(node string, brains ...string) *runningAgent {
	return newRunningAgent(agentstream.Config{
		NodeName: node, AgentVersion: "test", Brains: brains, Log: quiet,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	})
}

// newRunningAgent is a real agent of cfg over a recording dataplane of its own.
func newRunningAgent(cfg agentstream.Config) *runningAgent {
	dp := dataplane.NewRecording()
	cfg.Dataplane = dp
	return &runningAgent{Agent: agentstream.New(cfg), cfg: cfg, dp: dp}
}

// dialOptions rebuilds the (not yet started) agent with more dial options.
func (a *runningAgent) dialOptions(opts ...grpc.DialOption) {
	a.cfg.DialOptions = append(a.cfg.DialOptions, opts...)
	a.Agent = agentstream.New(a.cfg)
}

func (a *runningAgent) start(t testing.TB) {
	t.Helper()
	a.run()
	t.Cleanup(a.halt)
}

// run starts the agent's Run; halt ends it. A child process of simulated agents has no test to
// clean up after it.
func (a *runningAgent) run() {
	ctx, cancel := context.WithCancel(context.Background())
	a.stop, a.done = cancel, make(chan struct{})
	go func() { defer close(a.done); a.Run(ctx) }()
}

// halt ends Run and waits for it: its stream and connection are closed when it returns.
func (a *runningAgent) halt() {
	if a.stop != nil {
		a.stop()
		<-a.done
		a.stop = nil
	}
}

// hangGuard bounds every wait of the tests: far above what any of them needs.
const hangGuard = 20 * time.Second

// holdsThroughout checks a negative assertion: holds must be true at every poll for at least
// window, and until attempted says that what could break it was tried. Checked once, soon after
// the event, such an assertion passes whether or not the event could have happened yet.
func holdsThroughout(t *testing.T, what string, window time.Duration, attempted, holds func() bool) {
	t.Helper()
	start := time.Now()
	for time.Since(start) < window || !attempted() {
		if !holds() {
			t.Fatalf("%s: broken after %s", what, time.Since(start).Round(time.Millisecond))
		}
		if time.Since(start) > hangGuard {
			t.Fatalf("%s: held for %s, but too few attempts were made to tell", what, hangGuard)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !holds() {
		t.Fatalf("%s: broken after %s", what, time.Since(start).Round(time.Millisecond))
	}
}

// retryWindow is longer than anything that could still be on its way when a negative assertion
// starts: the brain's coalescing (MaxDelay), a replica holding an agent that is ahead of it
// (BehindWait) and the agent's longest wait before it tries again (BackoffMax, plus the floor of
// its jitter), twice over. opts must spell out the values the test relies on: the defaults are
// the hub's, not visible here.
func retryWindow(opts stream.Options, a *runningAgent) time.Duration {
	return 2 * (opts.MaxDelay + opts.BehindWait + a.cfg.BackoffMax + a.cfg.BackoffMin/2)
}

// desired returns node's desired versions in b.
func desired(b *brain.Brain, node string) map[string]string {
	out := map[string]string{}
	b.Hub.View(func(e *compute.Engine) {
		e.ForEach(node, func(r *compute.Resource) { out[r.Name] = r.Version })
	})
	return out
}

func sameVersions(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

var errRefused = errors.New("refused by test")

func listen(t testing.TB) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}
