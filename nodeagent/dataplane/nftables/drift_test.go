package nftables

import (
	"context"
	"net/netip"
	"strings"
	"sync"
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
		if same, _ := sameState(d.tables[f].k, k, func() bool { return false }); !same {
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

// blockFirstDump makes the fake's next read wait until release is closed; started is closed once
// the read began.
func blockFirstDump(k *Fake) (started, release chan struct{}) {
	started, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	k.mu.Lock()
	k.beforeDump = func() {
		once.Do(func() {
			close(started)
			<-release
		})
	}
	k.mu.Unlock()
	return started, release
}

func TestApplyIsNotHeldUpByAReconcileReading(t *testing.T) {
	d, k, _ := driftFixture(t)
	drift(t, k, "delete element ip ganglion fe-k1 { 10.96.0.11 . tcp . 80 }")
	started, release := blockFirstDump(k)
	// While the pass reads, a change moves web to another endpoint and adds a port.
	dataplanetest.ApplyDuringReconcile(t, d, started, release, dataplane.Change{Upserts: []dataplane.Port{
		webPort("10.1.0.9:8080"),
		mkPort("default/new:http/v4", clusterIP("10.96.0.13", 80), cluster(fwd("10.1.0.4:8080")))}})
	// The pass read again after the change: it repaired the drift and kept the change.
	got := k.Dump()
	for _, s := range []string{"10.96.0.11 . tcp . 80", "10.96.0.13 . tcp . 80", "10.1.0.9", "10.1.0.4"} {
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
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileRepaired: 1, dataplane.ReconcileClean: 1}, 1)
}

func TestReconcileGivesWayToAWaitingChange(t *testing.T) {
	d, k, want := driftFixture(t)
	drift(t, k, "flush chain ip ganglion cl_default/sticky.http/v4")
	d.waiting.Add(1) // as if an Apply waited for the lock through the whole pass
	reconcile(t, d)
	if k.Dump() == want {
		t.Fatal("the pass repaired while a change waited")
	}
	wantPasses(t, d, map[string]int{dataplane.ReconcileDeferred: 1}, 1)
	d.waiting.Add(-1)
	reconcileTo(t, d, k, want, "the next pass did not repair")
	wantPasses(t, d, map[string]int{dataplane.ReconcileDeferred: 1, dataplane.ReconcileRepaired: 1}, 2)
}

func TestSameStateStopsWhenAsked(t *testing.T) {
	d, _, _ := driftFixture(t)
	v := d.tables[familyV4].k
	if same, stopped := sameState(v, v, func() bool { return false }); !same || stopped {
		t.Fatalf("a view compared with itself: same %t, stopped %t", same, stopped)
	}
	big := newKernelState()
	for i := range 3 * yieldEvery {
		big.chains[string(rune('a'+i%26))+strings.Repeat("x", i)] = []string{"h"}
	}
	if _, stopped := sameState(big, big, func() bool { return true }); !stopped {
		t.Fatal("sameState did not stop")
	}
}
