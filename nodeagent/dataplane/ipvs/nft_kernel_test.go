package ipvs

import (
	"context"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// inFreshNetns moves the calling goroutine, locked to its thread, into a new network namespace
// until the test ends; nft started from it runs there too. The host kernel has nftables (not
// IPVS), so the nftables half is checked here against the real kernel, IPVS faked.
func inFreshNetns(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and dies with the test's goroutine.
			t.Errorf("restoring netns: %v", err)
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
}

func listTable(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nft", "list", "table", "inet", tableName).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

func TestNFTablesHalfAgainstTheKernel(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "nft")
	inFreshNetns(t)
	nft, err := newNFTNetlink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nft.close() })
	k := newFakeKernel()
	start := func() *Dataplane {
		d := newDataplane(Options{Node: testNode}, k.ipvs, nft, k.dev, k.ct)
		if err := d.start(context.Background()); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := start()
	lb := svcPort(1, "10.1.1.2:8080")
	lb.Service.Frontends = append(lb.Service.Frontends, &v1.Frontend{
		Kind: v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, Address: "203.0.113.9", Port: 80, SourceRanges: []string{"198.51.100.0/24"}})
	v6 := svcPort(2, "[fd00:1::2]:8080")
	v6.Service.Family = v1.IPFamily_IP_FAMILY_IPV6
	v6.Service.Frontends[0].Address = "fd00:96::2"
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080"), lb, v6}})
	table := listTable(t)
	for _, want := range []string{
		"10.96.0.1 . tcp . 80 : goto fwd-clusterip", "192.168.0.1 . tcp . 30000 : goto fwd-masq",
		"203.0.113.9 . tcp . 80 : goto sr-", "ip saddr 198.51.100.0/24 goto fwd-masq",
		"fd00:96::2 . tcp . 80 : goto fwd-clusterip", "10.1.1.2 . 10.1.1.2",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}

	// A verdict change replaces the element in place.
	rej := svcPort(0)
	rej.Cluster = &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_REJECT}
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{rej}})
	if table := listTable(t); !strings.Contains(table, "10.96.0.1 . tcp . 80 : goto reject-all") {
		t.Errorf("verdict not replaced:\n%s", table)
	}

	d.Close()
	restartPruneAndRepair(t, start, rej)
}

// restartPruneAndRepair checks, on the real table, that a restarted dataplane reads the elements
// back and, once pruned, removes the rest; and that a table deleted by hand comes back whole.
func restartPruneAndRepair(t *testing.T, start func() *Dataplane, rej dataplane.Port) {
	t.Helper()
	d := start()
	if got := len(d.frontends); got != 7 {
		t.Errorf("adopted %d frontend elements, want 7 (3 ClusterIPs, 3 NodePorts, 1 LB)", got)
	}
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{rej}})
	if err := d.Prune(context.Background(), map[string]bool{rej.Base: true}); err != nil {
		t.Fatal(err)
	}
	table := listTable(t)
	for _, gone := range []string{"203.0.113.9", "sr-", "fd00:96::2", "10.1.1.2 . 10.1.1.2"} {
		if strings.Contains(table, gone) {
			t.Errorf("table still has %q after Prune:\n%s", gone, table)
		}
	}

	// A table deleted by hand comes back whole on Reconcile.
	if out, err := exec.Command("nft", "delete", "table", "inet", tableName).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if table := listTable(t); !strings.Contains(table, "10.96.0.1 . tcp . 80 : goto reject-all") || !strings.Contains(table, "masquerade") {
		t.Errorf("table not repaired:\n%s", table)
	}
}
