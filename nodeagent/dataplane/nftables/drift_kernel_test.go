package nftables

import (
	"testing"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// TestKernelGenerationTellsDriftFromNoise checks, on the kernel, what drift repair assumes of
// it: our commits move the generation by one and refused ones not at all, the view is exactly
// what a dump reads (so a read after another table's change repairs nothing), and a change to
// our table is seen and repaired.
func TestKernelGenerationTellsDriftFromNoise(t *testing.T) {
	d, ns := nsDataplane(t)
	apply(t, d, append(benchPorts(300),
		mkPort("default/sticky:http/v4", clusterIP("10.96.0.12", 80), affinity(60), cluster(fwd("10.1.0.3:8080", "10.1.0.4:8080"))),
		mkPort("default/web:http/v6", clusterIP("fd00:96::10", 80), nodePort(30081), external(scopeLocal, false),
			cluster(fwd("[fd00:1::1]:8080")), local(fwd("[fd00:1::2]:8080"))))...)
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 1}, 0)
	viewIsDump(t, d)

	d.lock()
	err := d.commit(&Plan{fams: []*familyPlan{{t: d.tables[familyV4], ops: []op{{kind: opDelChain, name: "no-such-chain"}}}}})
	d.mu.Unlock()
	if err == nil {
		t.Fatal("the kernel accepted the deletion of a missing chain")
	}
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 2}, 0)

	cc, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	cc.AddTable(&nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4})
	if err := cc.Flush(); err != nil {
		t.Fatal(err)
	}
	reconcile(t, d)
	if d.lastMessages != 0 {
		t.Errorf("after another table's change the pass sent %d messages", d.lastMessages)
	}
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 3, dataplane.ReconcileRepaired: 0}, 1)
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 4}, 1)

	cc.FlushChain(&nftables.Chain{Name: chainServices, Table: d.tables[familyV4].table})
	if err := cc.Flush(); err != nil {
		t.Fatal(err)
	}
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 4, dataplane.ReconcileRepaired: 1}, 2)
	reconcile(t, d)
	wantPasses(t, d, map[string]int{dataplane.ReconcileClean: 5, dataplane.ReconcileRepaired: 1}, 2)
	viewIsDump(t, d)
}
