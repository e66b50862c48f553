package ipvs

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/benchstat"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// fullSyncs times, runs times each, our full sync and `ipvsadm -R` of the same virtual and real
// servers, each from an empty network namespace. Our side is ipvs.New (its dummy device, its
// nftables table, sysctls) and one Apply of every port, which also puts every service address
// on the device and in the nftables frontend map; ipvsadm only creates the IPVS objects, so the
// ratio is a floor that favours ipvsadm. The sides alternate which goes first, so drifting load
// (and whatever a deleted namespace leaves the kernel to free) falls on both.
func fullSyncs(t *testing.T, ports []dataplane.Port, rules []byte, n int) (ours, restore benchstat.Runs) {
	var oursTable, theirTable []string
	for i := range n {
		oursFirst := i%2 == 0
		if oursFirst {
			ours = append(ours, ourFullSync(t, ports, &oursTable))
		}
		restore = append(restore, ipvsadmRestore(t, rules, &theirTable))
		if !oursFirst {
			ours = append(ours, ourFullSync(t, ports, &oursTable))
		}
	}
	// Both sides must have built the same table, or the ratio compares different work.
	if !slices.Equal(oursTable, theirTable) {
		t.Fatalf("ipvsadm -R and our full sync built different IPVS tables: %d and %d lines; first difference: %s",
			len(theirTable), len(oursTable), firstDifference(theirTable, oursTable))
	}
	return ours, restore
}

// ourFullSync is one run of our side in an empty namespace; table receives its IPVS table the
// first time.
func ourFullSync(t *testing.T, ports []dataplane.Port, table *[]string) time.Duration {
	var took time.Duration
	inFreshNetns(t, "bench-ours", func() {
		runtime.GC() // neither side pays for the garbage of the run before
		start := time.Now()
		d := benchDataplane(t)
		if errs := d.Apply(context.Background(), dataplane.Change{Upserts: ports}); len(errs) > 0 {
			t.Fatalf("full sync: %d errors, e.g. %v", len(errs), firstErr(errs))
		}
		took = time.Since(start)
		d.Close()
		if *table == nil {
			*table = ipvsTable(t)
		}
		emptyKernel(t)
	})
	return took
}

// ipvsadmRestore is one run of `ipvsadm -R` in an empty namespace; what ipvsadm-restore would
// also run first, `ipvsadm -C`, has nothing to clear there and is left out.
func ipvsadmRestore(t *testing.T, rules []byte, table *[]string) time.Duration {
	var took time.Duration
	inFreshNetns(t, "bench-ipvsadm", func() {
		runtime.GC()
		cmd := exec.Command("ipvsadm", "-R")
		cmd.Stdin = bytes.NewReader(rules)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took = time.Since(start)
		if err != nil {
			t.Fatalf("ipvsadm -R: %v: %s", err, out)
		}
		if *table == nil {
			*table = ipvsTable(t)
		}
		emptyKernel(t)
	})
	return took
}

// ipvsTable is the namespace's IPVS table as `ipvsadm -Sn` saves it, sorted.
func ipvsTable(t *testing.T) []string {
	out, err := exec.Command("ipvsadm", "-Sn").Output()
	if err != nil {
		t.Fatalf("ipvsadm -Sn: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(lines)
	return lines
}

// emptyKernel removes what a run built (virtual servers, our device and table) before the
// namespace goes, so the kernel frees it now rather than on a worker during the next run.
func emptyKernel(t *testing.T) {
	for _, c := range [][]string{{"ipvsadm", "-C"}, {"nft", "flush", "ruleset"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", c, err, out)
		}
	}
	_ = run("ip", "link", "del", "ganglion-ipvs0") // absent after ipvsadm's run
}

func firstDifference(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("%q vs %q", a[i], b[i])
		}
	}
	return "one is a prefix of the other"
}

// inFreshNetns runs fn on a thread inside a new network namespace with lo up; programs fn
// starts inherit it, since the thread that forks them stays locked there.
func inFreshNetns(t *testing.T, name string, fn func()) {
	t.Helper()
	ns, done := freshNetns(t, name)
	defer done()
	// On this goroutine, not netlab's Do: fn calls t.Fatal.
	if err := ns.DoHere(func() error { fn(); return nil }); err != nil {
		t.Fatal(err)
	}
}

// freshNetns creates a network namespace with lo up (IPVS refuses real servers without a local
// routing table) and returns it with what deletes it.
func freshNetns(t *testing.T, name string) (*netlab.NS, func()) {
	t.Helper()
	if err := runAll([][]string{{"ip", "netns", "add", name}, {"ip", "-n", name, "link", "set", "lo", "up"}}); err != nil {
		t.Fatal(err)
	}
	ns, err := netlab.OpenNS(name)
	if err != nil {
		run("ip", "netns", "del", name)
		t.Fatal(err)
	}
	return ns, func() {
		ns.Close()
		run("ip", "netns", "del", name)
	}
}
