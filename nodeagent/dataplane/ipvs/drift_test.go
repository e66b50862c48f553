package ipvs

import (
	"context"
	"net/netip"
	"sync"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/dataplanetest"
)

func reconcile(t *testing.T, d *Dataplane) {
	t.Helper()
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
}

// wantPasses checks the backend's drift-repair totals (dataplanetest.WantPasses).
func wantPasses(t *testing.T, d *Dataplane, passes map[string]int, dumps int) dataplane.ReconcileStats {
	t.Helper()
	return dataplanetest.WantPasses(t, d.ReconcileMetrics(), passes, dumps)
}

// appliedFake is a backend on the fake kernel with two services applied and pruned, and one
// pass behind it (the first rewrites the table: start leaves the generation unconfirmed).
func appliedFake(t *testing.T) (*Dataplane, *fakeKernel) {
	t.Helper()
	k := newFakeKernel()
	d := startFake(t, k)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080", "10.1.2.3:8080"), svcPort(1, "10.1.2.2:8080")}})
	if err := d.Prune(context.Background(), map[string]bool{"ns/s0/v4": true, "ns/s1/v4": true}); err != nil {
		t.Fatal(err)
	}
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 1}, 1)
	return d, k
}

func TestReconcileOfAnUntouchedTableDoesNotRewriteIt(t *testing.T) {
	d, k := appliedFake(t)
	commits := k.nft.commits
	for range 3 {
		reconcile(t, d)
	}
	if k.nft.commits != commits {
		t.Errorf("clean passes committed %d nftables transactions", k.nft.commits-commits)
	}
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 4}, 1)
}

func TestReconcileAfterAnotherTableChangedRepairsNothing(t *testing.T) {
	d, k := appliedFake(t)
	want := k.nft.Dump()
	k.nft.Touch()
	reconcile(t, d)
	if got := k.nft.Dump(); got != want {
		t.Errorf("the table changed:\n%s\nwant\n%s", got, want)
	}
	s := wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 2}, 2)
	if s.Repairs != 0 {
		t.Errorf("repairs counted: %d", s.Repairs)
	}
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 3}, 2) // the rewrite confirmed the generation
}

func TestReconcileCountsWhatItRepaired(t *testing.T) {
	d, k := appliedFake(t)
	want := k.nft.Dump()
	k.nft.Delete()
	delete(k.ipvs.svcs, cip0)
	delete(k.dev.addrs, cip0.Addr)
	reconcile(t, d)
	if got := k.nft.Dump(); got != want {
		t.Errorf("the table did not come back:\n%s\nwant\n%s", got, want)
	}
	if got := len(k.ipvs.reals(cip0)); got != 2 {
		t.Errorf("repaired ClusterIP has %d real servers, want 2", got)
	}
	s := wantPasses(t, d, map[string]int{dataplane.ReconcileRepaired: 1}, 2)
	// 4 frontend elements, 1 address, the virtual server.
	if s.Repairs < 6 {
		t.Errorf("repairs counted: %d, want at least 6", s.Repairs)
	}
}

func TestApplyIsNotHeldUpByAReconcileReadingIPVS(t *testing.T) {
	d, k := appliedFake(t)
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	k.ipvs.mu.Lock()
	k.ipvs.beforeList = func() { once.Do(func() { close(started); <-release }) }
	k.ipvs.mu.Unlock()
	// While the pass reads IPVS, a change adds a service: a read from before it would make the
	// service look missing (and, the state being complete, its device address unclaimed).
	dataplanetest.ApplyDuringReconcile(t, d, started, release,
		dataplane.Change{Upserts: []dataplane.Port{svcPort(2, "10.1.2.5:8080")}})
	cip2 := vsKey{Proto: 6, Addr: netip.MustParseAddr("10.96.0.3"), Port: 80}
	if got := len(k.ipvs.reals(cip2)); got != 1 {
		t.Errorf("the service applied during the pass has %d real servers, want 1", got)
	}
	if !k.dev.addrs[cip2.Addr] {
		t.Errorf("the service applied during the pass lost its address")
	}
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 2}, 1)
}

func TestReconcileDefersToChangesThatKeepComing(t *testing.T) {
	d, k := appliedFake(t)
	k.ipvs.mu.Lock()
	k.ipvs.beforeList = func() {
		d.mu.Lock()
		d.epoch++ // a change committed during every read
		d.mu.Unlock()
	}
	k.ipvs.mu.Unlock()
	delete(k.ipvs.svcs, cip0)
	reconcile(t, d)
	if k.ipvs.reals(cip0) != nil {
		t.Error("the pass repaired from a stale read")
	}
	wantPasses(t, d, map[string]int{dataplane.ReconcileDeferred: 1}, 1)
	k.ipvs.mu.Lock()
	k.ipvs.beforeList = nil
	k.ipvs.mu.Unlock()
	reconcile(t, d)
	if got := len(k.ipvs.reals(cip0)); got != 2 {
		t.Errorf("the next pass left %d real servers, want 2", got)
	}
}

func TestReconcileGivesWayToAWaitingChange(t *testing.T) {
	d, k := appliedFake(t)
	for i := range 3 * yieldEvery {
		apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(10+i, "10.1.2.2:8080")}})
	}
	d.waiting.Add(1) // as if an Apply waited for the lock through the whole pass
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileDeferred: 1}, 1)
	d.waiting.Add(-1)
	delete(k.ipvs.svcs, cip0)
	reconcile(t, d)
	if got := len(k.ipvs.reals(cip0)); got != 2 {
		t.Errorf("the next pass left %d real servers, want 2", got)
	}
	wantPasses(t, d, map[string]int{dataplane.ReconcileDeferred: 1, dataplane.ReconcileRepaired: 1}, 1)
}
