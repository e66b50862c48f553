package ipvs

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/vm"
	"github.com/ganglion-proxy/ganglion/internal/benchstat"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/ipvs"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// benchEnv asks the guest's TestVMBench for the BENCH figures; without it, the e2e run gets a
// small pass through the same code (see benchScale).
const benchEnv = "GANGLION_IPVS_BENCH"

const (
	benchServices = 10000
	benchReals    = 5
	benchSmall    = 100
	benchChanges  = 101
)

func benchAddr(i int) string { return fmt.Sprintf("10.%d.%d.%d", 96+i/65536, i/256%256, i%256) }

// benchPort is service i: a ClusterIP with benchReals endpoints; shift moves its last endpoint,
// which is the single endpoint change the apply ratio measures.
func benchPort(i, shift int) dataplane.Port {
	es := &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_FORWARD}
	for j := range benchReals {
		if j == benchReals-1 {
			j += shift
		}
		es.Backends = append(es.Backends, &v1.Backend{Address: fmt.Sprintf("10.200.%d.%d", j, i%250+1), Port: 8080, Weight: 1})
	}
	return dataplane.Port{
		Base: fmt.Sprintf("bench/s%d/v4", i),
		Service: &v1.ServicePort{
			Namespace: "bench", Name: fmt.Sprintf("s%d", i), Family: v1.IPFamily_IP_FAMILY_IPV4, Protocol: v1.Protocol_PROTOCOL_TCP,
			Frontends: []*v1.Frontend{{Kind: v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP, Address: benchAddr(i), Port: 80}},
			Internal:  &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER},
		},
		Cluster: es,
	}
}

// ipvsadmRules is the same set as benchPort in `ipvsadm-save -n` form.
func ipvsadmRules(n int) []byte {
	var b bytes.Buffer
	for i := range n {
		p := benchPort(i, 0)
		vs := benchAddr(i) + ":80"
		fmt.Fprintf(&b, "-A -t %s -s rr\n", vs)
		for _, be := range p.Cluster.Backends {
			fmt.Fprintf(&b, "-a -t %s -r %s:%d -m -w 1\n", vs, be.Address, be.Port)
		}
	}
	return b.Bytes()
}

// benchScale is how much TestVMBench does: the BENCH figures when BenchmarkIPVSInVM asks for
// them, and otherwise (every e2e run) a small pass through the same code, so the benchmark and
// its check that both sides build the same table cannot rot between measurements.
type benchScale struct {
	services, small, runs, changes int
	applyRuns                      int // pairs of the apply ratio: cheap, and held to its floor in every run
}

// applyFloor is the apply ratio's floor (issue 13): one endpoint change with 10,000 services
// installed costs at most this many times one with 100. A full run above it fails.
const applyFloor = 1.5

var (
	fullScale  = benchScale{services: benchServices, small: benchSmall, runs: 5, changes: benchChanges, applyRuns: 31}
	smokeScale = benchScale{services: 200, small: 20, runs: 2, changes: 11, applyRuns: 2}
)

// TestVMBench measures, in the guest, our full sync against `ipvsadm -R` of the same set (each
// from an empty namespace, see fullSyncs), and one endpoint change with 10,000 services
// installed against the same with 100. Every figure is a median of runs with its range. Each
// phase runs in namespaces of its own: IPVS keeps deleted real servers in a per-namespace trash
// list that every later addition walks, so whichever ran second in a shared namespace would lose.
func TestVMBench(t *testing.T) {
	vm.RequireInside(t)
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ipvsadm")
	sc := smokeScale
	if os.Getenv(benchEnv) != "" {
		sc = fullScale
	}
	all := make([]dataplane.Port, sc.services)
	for i := range all {
		all[i] = benchPort(i, 0)
	}
	ours, restore := fullSyncs(t, all, ipvsadmRules(sc.services), sc.runs)
	large, small := endpointChanges(t, all, sc)
	applyRatio := benchstat.RatioOf(large, small)
	line := fmt.Sprintf("BENCH ipvs %s %s runs=%d apply_runs=%d %s %s %s %s",
		benchstat.RatioOf(ours, restore).Keys("fullsync_vs_ipvsadm"), applyRatio.Keys("apply_ratio"), sc.runs, sc.applyRuns,
		ours.SecKeys("fullsync_s"), restore.SecKeys("ipvsadm_restore_s"), large.UsKeys("apply_10k_us"), small.UsKeys("apply_100_us"))
	t.Logf("full sync runs: ours %v, ipvsadm -R %v", ours, restore)
	if sc != fullScale {
		t.Logf("at %d services, not a figure: %s", sc.services, line)
		return
	}
	if applyRatio.Med > applyFloor {
		t.Fatalf("apply ratio above its floor %.1f: %s", applyFloor, line)
	}
	fmt.Println(line)
}

// endpointChanges returns, per round, the median time of one endpoint change with every port
// installed and with sc.small of them. The two dataplanes live side by side in namespaces of
// their own and the rounds alternate between them, so load on the machine falls on both.
func endpointChanges(t *testing.T, all []dataplane.Port, sc benchScale) (large, small benchstat.Runs) {
	type side struct {
		ns *netlab.NS
		d  *ipvs.Dataplane
		i  int // the service whose endpoint moves
	}
	var sides []side
	for k, n := range []int{len(all), sc.small} {
		ns, done := freshNetns(t, fmt.Sprintf("bench-apply%d", k))
		t.Cleanup(done)
		s := side{ns: ns, i: n / 2}
		in(t, ns, func() {
			s.d = benchDataplane(t)
			t.Cleanup(func() { in(t, ns, func() { s.d.Close(); emptyKernel(t) }) })
			if errs := s.d.Apply(context.Background(), dataplane.Change{Upserts: all[:n]}); len(errs) > 0 {
				t.Fatalf("sync of %d services: %v", n, firstErr(errs))
			}
		})
		sides = append(sides, s)
	}
	for range sc.applyRuns {
		for k, s := range sides {
			var m time.Duration
			in(t, s.ns, func() { m = endpointChange(t, s.d, s.i, sc.changes) })
			if k == 0 {
				large = append(large, m)
			} else {
				small = append(small, m)
			}
		}
	}
	return large, small
}

// in runs fn on a thread inside ns: the dataplane runs nft there.
func in(t *testing.T, ns *netlab.NS, fn func()) {
	t.Helper()
	if err := ns.DoHere(func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func benchDataplane(t *testing.T) *ipvs.Dataplane {
	t.Helper()
	node := dataplane.Node{Name: "bench", Addresses: []netip.Addr{netip.MustParseAddr("192.168.0.1")}}
	d, err := ipvs.New(context.Background(), ipvs.Options{Node: node})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// endpointChange returns the median time of moving one endpoint of service i back and forth.
func endpointChange(t *testing.T, d *ipvs.Dataplane, i, changes int) time.Duration {
	t.Helper()
	// A few unmeasured changes first, and a collection, so neither warm-up nor a pending GC of
	// the sync's garbage lands in the samples.
	for n := range 5 {
		if errs := d.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{benchPort(i, (n+1)%2)}}); len(errs) > 0 {
			t.Fatalf("endpoint change: %v", errs)
		}
	}
	runtime.GC()
	var times []time.Duration
	// The warm-up left shift 1: sample n moves the endpoint to shift n%2, so each one changes it.
	for n := range changes {
		p := benchPort(i, n%2)
		start := time.Now()
		if errs := d.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{p}}); len(errs) > 0 {
			t.Fatalf("endpoint change: %v", errs)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	return times[len(times)/2]
}

func firstErr(errs map[string]error) error {
	for _, err := range errs {
		return err
	}
	return nil
}
