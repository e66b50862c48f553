package ipvs

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/vm"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/ipvs"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// benchEnv asks the guest to run TestVMBench; it is too slow for the e2e run.
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

// TestVMBench measures, in the guest, a full sync against ipvsadm-restore of the same set, and
// one endpoint change with 10,000 services installed against the same with 100. Each phase runs
// in a fresh network namespace: IPVS keeps deleted real servers in a per-namespace trash list
// that every later addition walks, so whichever ran second in a shared namespace would lose.
func TestVMBench(t *testing.T) {
	vm.RequireInside(t)
	if os.Getenv(benchEnv) == "" {
		t.Skip("benchmark; run by BenchmarkIPVSInVM")
	}
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ipvsadm")
	ctx := context.Background()

	// ipvsadm-restore is a bash wrapper around `ipvsadm -C` and `ipvsadm -R`; the guest has no
	// bash, so run those two directly.
	rules := ipvsadmRules(benchServices)
	var restore time.Duration
	inFreshNetns(t, "bench-ipvsadm", func() {
		start := time.Now()
		if out, err := exec.Command("ipvsadm", "-C").CombinedOutput(); err != nil {
			t.Fatalf("ipvsadm -C: %v: %s", err, out)
		}
		cmd := exec.Command("ipvsadm", "-R")
		cmd.Stdin = bytes.NewReader(rules)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("ipvsadm -R: %v: %s", err, out)
		}
		restore = time.Since(start)
	})

	var full, large, small time.Duration
	inFreshNetns(t, "bench-large", func() {
		d := benchDataplane(t)
		defer d.Close()
		all := make([]dataplane.Port, benchServices)
		for i := range all {
			all[i] = benchPort(i, 0)
		}
		start := time.Now()
		if errs := d.Apply(ctx, dataplane.Change{Upserts: all}); len(errs) > 0 {
			t.Fatalf("full sync: %d errors, e.g. %v", len(errs), firstErr(errs))
		}
		full = time.Since(start)
		large = endpointChange(t, d, benchServices/2)
	})
	inFreshNetns(t, "bench-small", func() {
		d := benchDataplane(t)
		defer d.Close()
		var some []dataplane.Port
		for i := range benchSmall {
			some = append(some, benchPort(i, 0))
		}
		if errs := d.Apply(ctx, dataplane.Change{Upserts: some}); len(errs) > 0 {
			t.Fatalf("sync: %v", firstErr(errs))
		}
		small = endpointChange(t, d, benchSmall/2)
	})
	fmt.Printf("BENCH ipvs fullsync_vs_ipvsadm=%.2f apply_ratio=%.2f fullsync_s=%.2f ipvsadm_restore_s=%.2f apply_10k_us=%d apply_100_us=%d\n",
		full.Seconds()/restore.Seconds(), float64(large)/float64(small), full.Seconds(), restore.Seconds(),
		large.Microseconds(), small.Microseconds())
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

// inFreshNetns runs fn on a thread inside a new network namespace with lo up; programs fn
// starts inherit it, since the thread that forks them stays locked there.
func inFreshNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	if err := runAll([][]string{{"ip", "netns", "add", name}, {"ip", "-n", name, "link", "set", "lo", "up"}}); err != nil {
		t.Fatal(err)
	}
	defer run("ip", "netns", "del", name)
	ns, err := netlab.OpenNS(name)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	// On this goroutine, not netlab's Do: fn calls t.Fatal.
	if err := ns.DoHere(func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// endpointChange returns the median time of moving one endpoint of service i back and forth.
func endpointChange(t *testing.T, d *ipvs.Dataplane, i int) time.Duration {
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
	for n := range benchChanges {
		p := benchPort(i, (n+1)%2)
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
