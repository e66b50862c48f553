package nftables

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/dataplanetest"
)

// driftFixture is a backend on the fake kernel with a ClusterIP+NodePort port and a port with
// chains of its own applied, and the fake's dump then.
func driftFixture(t *testing.T) (*Dataplane, *Fake, string) {
	t.Helper()
	k := NewFake()
	d, err := New(dataplane.Node{Name: "n1", Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, WithFake(k))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	apply(t, d, webPort("10.1.0.1:8080"),
		mkPort("default/np:http/v4", clusterIP("10.96.0.11", 80), nodePort(30080), external(scopeCluster, true), cluster(fwd("10.1.0.2:8080"))),
		mkPort("default/sticky:http/v4", clusterIP("10.96.0.12", 80), affinity(60), cluster(fwd("10.1.0.3:8080"))))
	return d, k, k.Dump()
}

// drift changes the fake from outside, as an administrator's nft commands would.
func drift(t *testing.T, k *Fake, cmds ...string) {
	t.Helper()
	for _, cmd := range cmds {
		if err := k.Run(cmd); err != nil {
			t.Fatal(err)
		}
	}
}

// reconcileTo runs a pass and checks the fake holds want after it.
func reconcileTo(t *testing.T, d *Dataplane, k *Fake, want, what string) {
	t.Helper()
	reconcile(t, d)
	if got := k.Dump(); got != want {
		t.Fatalf("%s:\n%s\nwant\n%s", what, got, want)
	}
}

func reconcile(t *testing.T, d *Dataplane) {
	t.Helper()
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
}

func (k *Fake) dumpCount() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.dumps
}

// wantPasses checks the backend's drift-repair totals (dataplanetest.WantPasses).
func wantPasses(t *testing.T, d *Dataplane, passes map[string]int, dumps int) dataplane.ReconcileStats {
	t.Helper()
	return dataplanetest.WantPasses(t, d.ReconcileMetrics(), passes, dumps)
}

// viewIsDump checks that the view is exactly what a dump of the kernel reads: then a pass that
// had to read (another table changed) finds nothing to plan, without planning.
func viewIsDump(t *testing.T, d *Dataplane) {
	t.Helper()
	for _, f := range families {
		k, err := readState(d.k, f)
		if err != nil {
			t.Fatal(err)
		}
		if same, _ := sameState(d.tables[f].k, k, nil, func() bool { return false }); !same {
			t.Errorf("%s: the view is not what a dump reads", f.word)
		}
	}
}

func TestReconcileOfAnUntouchedTableReadsNothing(t *testing.T) {
	d, k, _ := driftFixture(t)
	viewIsDump(t, d)
	before := k.dumpCount()
	for range 3 {
		reconcile(t, d)
	}
	if n := k.dumpCount() - before; n != 0 {
		t.Errorf("clean passes read the tables %d times", n)
	}
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 3}, 0)
}

func TestReconcileRepairsAForeignChangeToOurTable(t *testing.T) {
	d, k, want := driftFixture(t)
	drift(t, k, "delete element ip ganglion fe-k1 { 10.96.0.10 . tcp . 80 }",
		"flush chain ip ganglion cl_default/sticky.http/v4",
		"add element ip ganglion cluster-ips { 10.96.0.99 }")
	reconcileTo(t, d, k, want, "Reconcile did not put the table back")
	viewIsDump(t, d)
	s := wantPasses(t, d, map[string]int{dataplane.ReconcileRepaired: 1}, 1)
	if s.Repairs < 3 {
		t.Errorf("repairs counted: %d, want at least the 3 objects changed", s.Repairs)
	}
	// The repair's own commit leaves the generation known: the next pass is cheap again.
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileRepaired: 1, dataplane.ReconcileClean: 1}, 1)
}

func TestReconcileAfterAnotherTableChangedRepairsNothing(t *testing.T) {
	d, k, want := driftFixture(t)
	drift(t, k, "add table ip filter")
	reconcileTo(t, d, k, want, "our table changed")
	if d.lastMessages != 0 {
		t.Errorf("the pass sent %d messages", d.lastMessages)
	}
	s := wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 1, dataplane.ReconcileRepaired: 0}, 1)
	if s.Repairs != 0 {
		t.Errorf("repairs counted: %d", s.Repairs)
	}
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 2}, 1) // the dump confirmed the generation
}

// blockDump makes the fake's nth table read from now on (1: the next; each family's table is a
// read) wait until release is closed; started is closed once it began.
func blockDump(k *Fake, nth int) (started, release chan struct{}) {
	started, release = make(chan struct{}), make(chan struct{})
	k.mu.Lock()
	defer k.mu.Unlock()
	n := 0
	k.beforeDump = func() {
		if n++; n == nth {
			close(started)
			<-release
		}
	}
	return started, release
}

func TestApplyIsNotHeldUpByAReconcileReading(t *testing.T) {
	d, k, _ := driftFixture(t)
	// Drift in a set the change below does not write (one it writes is taken from the view, and
	// its drift found by the next pass).
	drift(t, k, "delete element ip ganglion np-ep { tcp . 30080 . 0x00000000 }")
	started, release := blockDump(k, 1)
	// While the pass reads, a change moves web to another endpoint and adds a port.
	dataplanetest.ApplyDuringReconcile(t, d, started, release, dataplane.Change{Upserts: []dataplane.Port{
		webPort("10.1.0.9:8080"),
		mkPort("default/new:http/v4", clusterIP("10.96.0.13", 80), cluster(fwd("10.1.0.4:8080")))}})
	// The pass read again after the change: it repaired the drift and kept the change.
	got := k.Dump()
	for _, s := range []string{"tcp . 30080 . 0x00000000", "10.96.0.13 . tcp . 80", "10.1.0.9", "10.1.0.4"} {
		if !strings.Contains(got, s) {
			t.Errorf("the table lacks %s after the pass:\n%s", s, got)
		}
	}
	if strings.Contains(got, "10.1.0.1") {
		t.Errorf("the pass put back web's old endpoint:\n%s", got)
	}
	wantPasses(t, d, map[string]int{dataplane.ReconcileRepaired: 1}, 1)
	if n := k.dumpCount(); n < 2 {
		t.Errorf("the stale read was not done again (reads: %d)", n)
	}
}

// TestReconcileKeepsAReadThatAChangeRacedWith checks that a change committed while a pass reads
// costs the pass no second read: what the change touched is taken from the view.
func TestReconcileKeepsAReadThatAChangeRacedWith(t *testing.T) {
	d, k, _ := driftFixture(t)
	drift(t, k, "add table ip filter")
	started, release := blockDump(k, 2) // ip is read, ip6 not yet
	reads := k.dumpCount()
	dataplanetest.ApplyDuringReconcile(t, d, started, release, dataplane.Change{
		Upserts:  []dataplane.Port{webPort("10.1.0.9:8080"), mkPort("default/new:http/v4", clusterIP("10.96.0.13", 80), cluster(fwd("10.1.0.4:8080")))},
		Removals: []string{"default/sticky:http/v4"}})
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 1, dataplane.ReconcileRepaired: 0}, 1)
	if n := k.dumpCount() - reads; n != 2 {
		t.Errorf("reads of the two tables: %d, want 2 (one read)", n)
	}
	viewIsDump(t, d)
	// The sets the change wrote were taken from the view, unverified: the next pass reads them,
	// and the one after is free again.
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 2}, 2)
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 3}, 2)
}

func TestReconcileGivesWayToAWaitingChangeUntilItsLastAttempt(t *testing.T) {
	d, k, want := driftFixture(t)
	drift(t, k, "flush chain ip ganglion cl_default/sticky.http/v4")
	reads := k.dumpCount()
	d.waiting.Add(1) // as if changes waited for the lock through the whole pass
	defer d.waiting.Add(-1)
	reconcileTo(t, d, k, want, "the last attempt did not repair")
	wantPasses(t, d, map[string]int{dataplane.ReconcileRepaired: 1}, 1)
	// Read, confirmed, planning given up twice, repaired: a read each.
	if n := k.dumpCount() - reads; n != 2*passAttempts {
		t.Errorf("reads of the two tables: %d, want %d", n, 2*passAttempts)
	}
}

// TestAnAbandonedRepairIsNotTakenForAClean checks that a view replaced by a dump whose repair
// gave way is not mistaken for the wanted state by the next comparison.
func TestAnAbandonedRepairIsNotTakenForAClean(t *testing.T) {
	d, k, want := driftFixture(t)
	drift(t, k, "flush chain ip ganglion cl_default/sticky.http/v4")
	dump, err := d.readTables()
	if err != nil {
		t.Fatal(err)
	}
	d.mu.Lock()
	d.waiting.Add(1)
	done, _, _ := d.repairDrift(dump, 0, false, false)
	d.waiting.Add(-1)
	d.mu.Unlock()
	if done {
		t.Fatal("the repair did not give way")
	}
	reconcileTo(t, d, k, want, "the pass after an abandoned repair did not repair")
}

func TestSameStateStopsWhenAsked(t *testing.T) {
	d, _, _ := driftFixture(t)
	v := d.tables[familyV4].k
	if same, stopped := sameState(v, v, nil, func() bool { return false }); !same || stopped {
		t.Fatalf("a view compared with itself: same %t, stopped %t", same, stopped)
	}
	big := newKernelState()
	for i := range 3 * yieldEvery {
		big.chains[string(rune('a'+i%26))+strings.Repeat("x", i)] = []string{"h"}
	}
	if _, stopped := sameState(big, big, nil, func() bool { return true }); !stopped {
		t.Fatal("sameState did not stop")
	}
}
