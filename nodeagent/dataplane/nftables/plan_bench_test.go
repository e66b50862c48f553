package nftables

import (
	"context"
	"testing"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// nopKernel accepts every transaction and holds nothing: benchmarks over it time the user-space
// half of a commit (rendering, planning, applying the view), without root.
type nopKernel struct{}

func (nopKernel) chains(*family) ([]string, error)                 { return nil, errNoTable }
func (nopKernel) rules(*family, func(chain, comment string)) error { return errNoTable }
func (nopKernel) sets(*family) ([]string, error)                   { return nil, errNoTable }
func (nopKernel) elements(*family, string, func(nftables.SetElement, string)) error {
	return nil
}
func (nopKernel) commit(*Plan) error          { return nil }
func (nopKernel) generation() (uint32, error) { return 0, nil }
func (nopKernel) forget([]conntrackJob) error { return nil }
func (nopKernel) close() error                { return nil }

var _ kernel = nopKernel{}

func newNop(b *testing.B) *Dataplane {
	d := &Dataplane{opts: options{masqBit: DefaultMasqueradeBit, rejectBit: DefaultRejectBit}, k: nopKernel{},
		tables: map[*family]*familyTable{}}
	for _, f := range families {
		t, err := newFamilyTable(f, benchNode(), d.opts)
		if err != nil {
			b.Fatal(err)
		}
		d.tables[f] = t
	}
	if err := d.resync(); err != nil {
		b.Fatal(err)
	}
	return d
}

// BenchmarkPlanFullSync times the user-space half of the benchmark's full sync: 10,000 services
// planned and applied to the view in one Apply.
func BenchmarkPlanFullSync(b *testing.B) {
	ports := benchPorts(benchServices)
	for b.Loop() {
		d := newNop(b)
		if errs := d.Apply(context.Background(), dataplane.Change{Upserts: ports}); errs != nil {
			b.Fatal(errs)
		}
	}
}

// BenchmarkPlanOneChange times the user-space half of one endpoint change among 10,000 services.
func BenchmarkPlanOneChange(b *testing.B) {
	d := newNop(b)
	if errs := d.Apply(context.Background(), dataplane.Change{Upserts: benchPorts(benchServices)}); errs != nil {
		b.Fatal(errs)
	}
	ports := [2]dataplane.Port{benchPort(1000, 0), benchPort(1000, 1)}
	i := 0
	for b.Loop() {
		i++
		if errs := d.Apply(context.Background(), dataplane.Change{Upserts: ports[i%2 : i%2+1]}); errs != nil {
			b.Fatal(errs)
		}
	}
}
