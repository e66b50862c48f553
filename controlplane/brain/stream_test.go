package brain_test

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	agentstream "github.com/ganglion-proxy/ganglion/nodeagent/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func upserts(b *brain.Brain) int {
	return int(testutil.ToFloat64(b.Hub.Metrics().Resources.WithLabelValues("upsert")))
}

func removals(b *brain.Brain) int {
	return int(testutil.ToFloat64(b.Hub.Metrics().Resources.WithLabelValues("remove")))
}

func updates(b *brain.Brain) int { return int(testutil.ToFloat64(b.Hub.Metrics().Updates)) }

func TestInitialSyncDeliversTheWholeState(t *testing.T) {
	b, addr := startBrain(t, 50, 4, stream.Options{})
	a := newAgent("node-1", addr)
	a.start(t)
	testwait.Eventually(t, "agent synced", func() bool { return a.Status().Synced })
	if want := desired(b, "node-1"); !sameVersions(a.Held(), want) {
		t.Fatalf("agent holds %d resources, brain wants %d", len(a.Held()), len(want))
	}
	if got := len(a.dp.Bases()); got != 50 {
		t.Errorf("dataplane has %d ports, want 50", got)
	}
	if got := upserts(b); got != 100 {
		t.Errorf("sent %d resources, want 100 (50 services + 50 cluster sets)", got)
	}
}

func TestIncrementalUpdateSendsOnlyTheChange(t *testing.T) {
	b, addr := startBrain(t, 50, 4, stream.Options{})
	a := newAgent("node-1", addr)
	a.start(t)
	testwait.Eventually(t, "agent synced", func() bool { return a.Status().Synced })
	before, changesBefore := upserts(b), len(a.dp.Changes())

	setSlice(b, 7, 4, 1)
	testwait.Eventually(t, "change applied", func() bool { return sameVersions(a.Held(), desired(b, "node-1")) })
	if got := upserts(b) - before; got != 1 {
		t.Errorf("sent %d resources for one changed endpoint set, want 1", got)
	}
	changes := a.dp.Changes()[changesBefore:]
	if len(changes) != 1 || len(changes[0].Upserts) != 1 || changes[0].Upserts[0].Base != "default/svc-7:http/v4" {
		t.Errorf("dataplane changes %+v, want one upsert of svc-7", changes)
	}
}

func TestRejectedResourceKeepsLastGoodStateAndIsNotResent(t *testing.T) {
	opts := stream.Options{MaxDelay: 100 * time.Millisecond}
	b, addr := startBrain(t, 10, 2, opts)
	a := newAgent("node-1", addr)
	// refusals counts attempts to apply svc-3's version 1 (target port 8081): each is a send of it.
	var refusals atomic.Int32
	a.dp.Fail = func(p dataplane.Port) error {
		if bk := p.Cluster.GetBackends(); p.Base == "default/svc-3:http/v4" && len(bk) > 0 && bk[0].Port == 8081 {
			refusals.Add(1)
			return errRefused
		}
		return nil
	}
	a.start(t)
	testwait.Eventually(t, "agent synced", func() bool { return a.Status().Synced })
	good := a.Held()["default/svc-3:http/v4/cluster"]

	setSlice(b, 3, 2, 1)
	testwait.Eventually(t, "rejection reported", func() bool { return b.Hub.Sessions()["node-1"].Rejected == 1 })
	if got := a.Held()["default/svc-3:http/v4/cluster"]; got != good {
		t.Errorf("agent holds %s after a rejection, want its last good %s", got, good)
	}
	if got := a.dp.Ports()["default/svc-3:http/v4"].Cluster.Backends[0].Port; got != 8080 {
		t.Errorf("dataplane programs port %d, want the last good 8080", got)
	}
	if st := b.Hub.Sessions()["node-1"]; !strings.Contains(st.LastError, "svc-3") {
		t.Errorf("last error %q does not name the resource", st.LastError)
	}

	// Other changes flow; the rejected version is not sent again, however often the brain
	// reconsiders it: each round names svc-3's set dirty (its version unchanged) in the same batch
	// as a change of svc-4, so svc-4's arrival shows the brain decided about svc-3 in that update.
	sent, window := upserts(b), retryWindow(opts, a)
	rounds := 0
	for start := time.Now(); rounds < 3 || time.Since(start) < window; {
		rounds++
		b.Hub.Apply(time.Time{}, 0, func(e *compute.Engine) compute.Delta {
			d := e.SetSlice(testSlice(4, 2, rounds))
			d.Shared = append(d.Shared, "default/svc-3:http/v4/cluster")
			return d
		})
		testwait.Eventually(t, "svc-4 applied", func() bool {
			return a.Held()["default/svc-4:http/v4/cluster"] == desired(b, "node-1")["default/svc-4:http/v4/cluster"]
		})
		if got := upserts(b) - sent; got != rounds {
			t.Fatalf("sent %d resources for %d changes of svc-4, want %d: the rejected one was resent", got, rounds, rounds)
		}
	}
	holdsThroughout(t, "svc-3's rejected version is sent once only", window,
		func() bool { return rounds >= 3 },
		func() bool { return refusals.Load() == 1 && upserts(b)-sent == rounds })

	// A new version is sent, and applied.
	setSlice(b, 3, 2, 2)
	testwait.Eventually(t, "svc-3 v2 applied", func() bool { return sameVersions(a.Held(), desired(b, "node-1")) })
	if st := b.Hub.Sessions()["node-1"]; st.Rejected != 0 {
		t.Errorf("still %d rejected after the fix", st.Rejected)
	}
}

func TestReconnectResumesWithOnlyTheDifference(t *testing.T) {
	b, addr := startBrain(t, 500, 4, stream.Options{})
	a := newAgent("node-1", addr)
	a.start(t)
	testwait.Eventually(t, "agent synced", func() bool { return a.Status().Synced })
	a.halt()
	// Changes go out at once: wait until the brain has seen the stream end, or they would be
	// sent to it (and counted) as it closes.
	testwait.Eventually(t, "session gone", func() bool { _, ok := b.Hub.Sessions()["node-1"]; return !ok })

	// While the agent is away: one service changes, one goes away.
	setSlice(b, 10, 4, 1)
	b.Hub.Apply(time.Time{}, 0, func(e *compute.Engine) compute.Delta {
		return e.DeleteService(testService(20).Key())
	})
	sentUp, sentRm, changes := upserts(b), removals(b), len(a.dp.Changes())
	a.start(t)
	testwait.Eventually(t, "agent resynced", func() bool { return sameVersions(a.Held(), desired(b, "node-1")) })
	if got := upserts(b) - sentUp; got != 1 {
		t.Errorf("resume sent %d resources, want 1 (the changed one)", got)
	}
	if got := removals(b) - sentRm; got != 2 {
		t.Errorf("resume sent %d removals, want 2 (svc-20's service and cluster set)", got)
	}
	if _, ok := a.dp.Ports()["default/svc-20:http/v4"]; ok {
		t.Error("the deleted service is still programmed")
	}
	if n := len(a.dp.Changes()) - changes; n != 1 {
		t.Errorf("resume took %d dataplane changes, want 1", n)
	}
}

// replicasFor starts two replicas with the same options and returns them as node's agent tries
// them (agentstream.Order, not list order): A is the one it prefers, B its fallback.
func replicasFor(t *testing.T, node string, services, endpoints int, opts stream.Options) (bA, bB *brain.Brain, addrA, addrB string) {
	t.Helper()
	b1, a1 := startBrain(t, services, endpoints, opts)
	b2, a2 := startBrain(t, services, endpoints, opts)
	if agentstream.Order(node, []string{a1, a2})[0] == a2 {
		return b2, b1, a2, a1
	}
	return b1, b2, a1, a2
}

func TestAgentMovesBetweenReplicasWithoutAFullResend(t *testing.T) {
	bA, bB, addrA, addrB := replicasFor(t, "node-1", 300, 4, stream.Options{})
	a := newAgent("node-1", addrB, addrA) // the list's order is not the agent's
	a.start(t)
	testwait.Eventually(t, "synced from A", func() bool { return a.Status().Synced && a.Status().Brain == addrA })

	setSlice(bA, 5, 4, 1) // the same change reaches both replicas
	setSlice(bB, 5, 4, 1)
	testwait.Eventually(t, "change applied", func() bool { return sameVersions(a.Held(), desired(bA, "node-1")) })
	bA.Stop()
	testwait.Eventually(t, "moved to B", func() bool { return a.Status().Brain == addrB })
	testwait.Eventually(t, "in sync with B", func() bool { return sameVersions(a.Held(), desired(bB, "node-1")) })
	if got := upserts(bB); got != 0 {
		t.Errorf("replica B sent %d resources to an agent that held everything, want 0", got)
	}
}

func TestAgentNeverMovesBackToAReplicaThatIsBehind(t *testing.T) {
	// A never waits: the agent is never ahead of it.
	optsB := stream.Options{BehindWait: 50 * time.Millisecond}
	bA, bB, addrA, addrB := replicasFor(t, "node-1", 20, 2, optsB)
	bA.Hub.Apply(time.Time{}, 100, func(*compute.Engine) compute.Delta { return compute.Delta{} })
	a := newAgent("node-1", addrA, addrB)
	meter := &wireMeter{} // counts the agent's attempts at B
	a.dialOptions(meter.dialOption())
	a.start(t)
	testwait.Eventually(t, "synced from A at revision 100", func() bool { return a.Status().Revision == 100 })
	bA.Stop()
	// B has read revision 1 only: however many times the agent tries it, it takes nothing from it.
	holdsThroughout(t, "the agent takes no state from a replica that is behind", retryWindow(optsB, a),
		func() bool { return meter.dialsTo(addrB) >= 3 },
		func() bool { return snapshots(bB) == 0 && a.Status().Brain != addrB })
	bB.Hub.Apply(time.Time{}, 100, func(*compute.Engine) compute.Delta { return compute.Delta{} })
	testwait.Eventually(t, "moved to B once it caught up", func() bool { return a.Status().Brain == addrB })
}

// silentAgent says hello and then never acknowledges anything.
func silentAgent(t *testing.T, addr, node string) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := v1.NewAgentServiceClient(conn).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: &v1.Hello{NodeName: node}}}); err != nil {
		t.Fatal(err)
	}
}

func TestSlowAgentDoesNotDelayOthersAndItsMemoryIsBounded(t *testing.T) {
	b, addr := startBrain(t, 100, 3, stream.Options{})
	silentAgent(t, addr, "slow")
	a := newAgent("node-1", addr)
	a.start(t)
	testwait.Eventually(t, "fast agent synced", func() bool { return a.Status().Synced })
	testwait.Eventually(t, "slow agent connected", func() bool { _, ok := b.Hub.Sessions()["slow"]; return ok })

	for round := 1; round <= 50; round++ {
		for i := range 20 {
			setSlice(b, i, 3, round)
		}
		testwait.Eventually(t, "fast agent applied the round", func() bool { return sameVersions(a.Held(), desired(b, "node-1")) })
	}
	// 1,000 changes to 20 endpoint sets: the slow agent's backlog is bounded by names, not events:
	// its unacknowledged snapshot (200 names) and the 20 names changed since.
	if p := b.Hub.Sessions()["slow"].Pending; p > 220 {
		t.Errorf("slow agent has %d pending names after 1000 changes; want at most 220", p)
	}
}

func TestBurstArrivesAsFewUpdates(t *testing.T) {
	b, addr := startBrain(t, 1000, 2, stream.Options{MaxDelay: 500 * time.Millisecond})
	a := newAgent("node-1", addr)
	a.start(t)
	testwait.Eventually(t, "agent synced", func() bool { return a.Status().Synced })
	before := updates(b)
	for i := range 1000 {
		setSlice(b, i, 2, 1)
	}
	testwait.Eventually(t, "burst applied", func() bool { return sameVersions(a.Held(), desired(b, "node-1")) })
	if n := updates(b) - before; n > 5 {
		t.Errorf("1000 changes arrived as %d updates, want a few", n)
	} else {
		t.Logf("1000 changes arrived as %d update(s)", n)
	}
}

func TestStalledStreamIsCancelledByTheWatchdog(t *testing.T) {
	b, addr := startBrain(t, 100, 5, stream.Options{StallTimeout: 300 * time.Millisecond})
	silentAgent(t, addr, "stuck")
	testwait.Eventually(t, "stalled stream cancelled", func() bool { return testutil.ToFloat64(b.Hub.Metrics().Stalled) == 1 })
	testwait.Eventually(t, "session gone", func() bool { _, ok := b.Hub.Sessions()["stuck"]; return !ok })
}

func TestHealthIsNotServingUntilSynced(t *testing.T) {
	b, err := brain.New(brain.Options{Log: quiet, Auth: auth.Config{Insecure: true}})
	if err != nil {
		t.Fatal(err)
	}
	lis := listen(t)
	go b.Serve(lis)
	t.Cleanup(b.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)
	check := func() healthpb.HealthCheckResponse_ServingStatus {
		r, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Status
	}
	if s := check(); s != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("before sync: %v", s)
	}
	b.MarkSynced()
	if s := check(); s != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("after sync: %v", s)
	}
}

func TestInspectExplainsAndListsNodes(t *testing.T) {
	b, addr := startBrain(t, 5, 3, stream.Options{})
	a := newAgent("node-1", addr)
	a.start(t)
	testwait.Eventually(t, "agent synced", func() bool { return a.Status().Synced })
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ic := v1.NewInspectServiceClient(conn)
	nodes, err := ic.ListNodes(context.Background(), &v1.ListNodesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Nodes) != 1 || !nodes.Nodes[0].Connected || nodes.Nodes[0].Resources != 10 || nodes.Nodes[0].Pending != 0 {
		t.Errorf("nodes %v", nodes.Nodes)
	}
	st, err := ic.GetNodeState(context.Background(), &v1.GetNodeStateRequest{Node: "node-1"})
	if err != nil || len(st.Resources) != 10 {
		t.Fatalf("state: %v, %d resources", err, len(st.GetResources()))
	}
	ex, err := ic.ExplainService(context.Background(), &v1.ExplainServiceRequest{Node: "node-1", Name: "svc-2"})
	if err != nil {
		t.Fatal(err)
	}
	if p := ex.Ports; len(p) != 1 || len(p[0].Internal.Backends) != 3 || !slices.ContainsFunc(p[0].Endpoints, func(e *v1.EndpointExplanation) bool { return e.Internal }) {
		t.Errorf("explain: %v", ex)
	}
	if _, err := ic.ExplainService(context.Background(), &v1.ExplainServiceRequest{Node: "node-1", Name: "nope"}); err == nil || !strings.Contains(err.Error(), "NotFound") {
		t.Errorf("unknown service: %v", err)
	}
	_ = b
}
