package ipvs

import (
	"context"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// BenchmarkReconcileClean times one drift-repair pass over 10,000 services when nothing
// drifted, on the fake kernel (this machine has no ip_vs): the user-space half of the pass, and
// the nftables transactions and IPVS reads it issues, per pass.
func BenchmarkReconcileClean(b *testing.B) {
	k := newFakeKernel()
	d := newDataplane(Options{Node: testNode, DrainTimeout: time.Minute}, k.ipvs, k.nft, k.dev, k.ct)
	if err := d.start(context.Background()); err != nil {
		b.Fatal(err)
	}
	ports := make([]dataplane.Port, 10000)
	keep := map[string]bool{}
	for i := range ports {
		ports[i] = svcPort(i, "10.1.2.2:8080", "10.1.2.3:8080")
		keep[ports[i].Base] = true
	}
	if errs := d.Apply(context.Background(), dataplane.Change{Upserts: ports}); errs != nil {
		b.Fatal(errs)
	}
	if err := d.Prune(context.Background(), keep); err != nil {
		b.Fatal(err)
	}
	if err := d.Reconcile(context.Background()); err != nil {
		b.Fatal(err)
	}
	commits, reads := k.nft.commits, k.ipvs.dumps
	b.ReportAllocs()
	for b.Loop() {
		if err := d.Reconcile(context.Background()); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(k.nft.commits-commits)/float64(b.N), "nft-commits/op")
	b.ReportMetric(float64(k.ipvs.dumps-reads)/float64(b.N), "ipvs-reads/op")
}
