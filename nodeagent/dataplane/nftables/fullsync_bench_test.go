package nftables

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/benchstat"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// benchNode is the node of the full-sync runs: what newLab's node is, less the remote-facing
// address, which only matters to packets.
func benchNode() dataplane.Node {
	return dataplane.Node{
		Name:      "node1",
		Addresses: []netip.Addr{netip.MustParseAddr(nodeIP), netip.MustParseAddr(nodeIP6)},
		PodCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:244:1::/64")},
	}
}

// fullSyncs times, benchRuns times each, our full sync and `nft -f` of the same ruleset, each
// from an empty network namespace to both families' tables holding every port. Our side is New
// (sockets, a dump that finds nothing, the skeleton's transaction) and one Apply of every port;
// the nft side is the process, parsing the script and its one transaction. The sides alternate
// which goes first, so drifting load on the machine falls on both.
func fullSyncs(b *testing.B, node dataplane.Node, ports []dataplane.Port) (ours, nft benchstat.Runs) {
	script, err := nftScript(node, ports)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "ruleset.nft")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		b.Fatal(err)
	}
	for i := range benchRuns {
		oursFirst := i%2 == 0
		if oursFirst {
			ours = append(ours, ourFullSync(b, node, ports))
		}
		nft = append(nft, nftFullSync(b, path, func(ns *netlab.NS) {
			if i == 0 {
				fullSyncMatches(b, ns, node, ports)
			}
		}))
		if !oursFirst {
			ours = append(ours, ourFullSync(b, node, ports))
		}
	}
	return ours, nft
}

// ourFullSync is one run of our side in an empty namespace.
func ourFullSync(b testing.TB, node dataplane.Node, ports []dataplane.Port) time.Duration {
	ns, done := emptyNS(b)
	defer done()
	runtime.GC() // neither side pays for the garbage of the run before
	start := time.Now()
	d, err := New(node, WithNetNS(ns.FD()))
	if err != nil {
		b.Fatalf("New: %v", err)
	}
	apply(b, d, ports...)
	took := time.Since(start)
	d.Close()
	return took
}

// nftFullSync is one run of `nft -f path` in an empty namespace; check sees the result before
// the namespace goes. nft starts on a thread inside the namespace, as our sockets are opened
// there: no `ip netns exec` is timed.
func nftFullSync(b testing.TB, path string, check func(*netlab.NS)) time.Duration {
	ns, done := emptyNS(b)
	defer done()
	runtime.GC()
	var took time.Duration
	err := ns.Do(func() error {
		start := time.Now()
		out, err := exec.Command("nft", "-f", path).CombinedOutput()
		took = time.Since(start)
		if err != nil {
			return fmt.Errorf("nft -f: %w\n%.2000s", err, out)
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	check(ns)
	return took
}

// fullSyncMatches proves the script builds the table our full sync builds: an agent started on
// it adopts everything (New repairs nothing) and re-applying every port sends nothing.
func fullSyncMatches(b testing.TB, ns *netlab.NS, node dataplane.Node, ports []dataplane.Port) {
	d, err := New(node, WithNetNS(ns.FD()))
	if err != nil {
		b.Fatalf("New on the nft -f table: %v", err)
	}
	defer d.Close()
	if d.lastMessages != 0 {
		b.Fatalf("the nft -f table differs from ours: New repaired it with %d messages", d.lastMessages)
	}
	apply(b, d, ports...)
	if d.lastMessages != 0 {
		b.Fatalf("the nft -f table differs from ours: re-applying the ports sent %d messages", d.lastMessages)
	}
}

// nsDataplane is a backend for benchNode in a new empty network namespace (root); both go when
// the test ends.
func nsDataplane(t testing.TB) (*Dataplane, *netlab.NS) {
	t.Helper()
	netlab.Require(t)
	ns, done := emptyNS(t)
	t.Cleanup(done)
	d, err := New(benchNode(), WithNetNS(ns.FD()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, ns
}

// emptyNS is a new network namespace and what removes it. Its tables are flushed before the
// namespace is deleted: the kernel frees a deleted namespace's tables later, on a worker that
// would otherwise compete with the next run.
func emptyNS(b testing.TB) (*netlab.NS, func()) {
	name := "gn" + netlab.UniqueID() + "-fs"
	netlab.Run(b, "ip", "netns", "add", name)
	ns, err := netlab.OpenNS(name)
	if err != nil {
		_ = exec.Command("ip", "netns", "del", name).Run()
		b.Fatal(err)
	}
	return ns, func() {
		defer func() { _ = exec.Command("ip", "netns", "del", name).Run() }()
		defer ns.Close()
		cc, err := nftables.New(nftables.WithNetNSFd(ns.FD()))
		if err != nil {
			b.Errorf("flush the namespace's tables: %v", err)
			return
		}
		cc.FlushRuleset()
		if err := cc.Flush(); err != nil {
			b.Errorf("flush the namespace's tables: %v", err)
		}
	}
}
