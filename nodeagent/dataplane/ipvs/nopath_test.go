package ipvs

import (
	"context"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestNeedsNoBinary applies, repairs and prunes in a fresh network namespace with PATH set to an
// empty directory, with the real nftables table and conntrack. IPVS and the dummy device are
// faked: the host kernel has neither (e2e/ipvs's TestVMNeedsNoBinary runs the whole backend so
// in the VM). knftables looked `nft` up on PATH and failed here; now the table is programmed and
// read back over netlink.
func TestNeedsNoBinary(t *testing.T) {
	testenv.RequireRoot(t)
	inFreshNetns(t)
	t.Setenv("PATH", t.TempDir())
	if p, err := exec.LookPath("nft"); err == nil {
		t.Fatalf("nft found on an empty PATH at %s", p)
	}
	nh, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	nft, err := newNFTNetlink()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nft.close(); nh.Close() })
	dev := &fakeDevice{addrs: map[netip.Addr]bool{}}
	d := newDataplane(Options{Node: testNode, DrainTimeout: time.Minute}, newFakeIPVS(), nft, dev, netlinkConntrack{h: nh})
	if err := d.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	udp := svcPort(0, "10.1.2.2:53", "10.1.2.3:53")
	udp.Service.Protocol = v1.Protocol_PROTOCOL_UDP
	lb := svcPort(1, "10.1.1.2:8080")
	lb.Service.Frontends = append(lb.Service.Frontends, &v1.Frontend{
		Kind: v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, Address: "203.0.113.9", Port: 80, SourceRanges: []string{"198.51.100.0/24"}})
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{udp, lb}})
	wantInKernel(t, nft, dev, 5, "10.96.0.1", "10.96.0.2", "203.0.113.9")

	// Drift: the table and an address gone behind our back come back on Reconcile.
	cc, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	cc.DelTable(&nftables.Table{Name: tableName, Family: nftables.TableFamilyINet})
	if err := cc.Flush(); err != nil {
		t.Fatal(err)
	}
	delete(dev.addrs, netip.MustParseAddr("10.96.0.2"))
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	wantInKernel(t, nft, dev, 5, "10.96.0.1", "10.96.0.2", "203.0.113.9")

	// A UDP endpoint that leaves takes its conntrack flows along (netlink, not `conntrack`).
	udp = svcPort(0, "10.1.2.3:53")
	udp.Service.Protocol = v1.Protocol_PROTOCOL_UDP
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{udp}})
	if err := d.Prune(context.Background(), map[string]bool{udp.Base: true}); err != nil {
		t.Fatal(err)
	}
	wantInKernel(t, nft, dev, 2, "10.96.0.1")
}

// wantInKernel reads the kernel back over netlink: n frontend elements, and exactly addrs on the
// device.
func wantInKernel(t *testing.T, nft *nftNetlink, dev addrDevice, n int, addrs ...string) {
	t.Helper()
	fes, err := nft.Frontends()
	if err != nil {
		t.Fatal(err)
	}
	if len(fes) != n {
		t.Errorf("frontend elements = %v, want %d", fes, n)
	}
	have, err := dev.List()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range sortedAddrs(toSet(have)) {
		got = append(got, a.String())
	}
	if len(got) != len(addrs) {
		t.Fatalf("device addresses = %v, want %v", got, addrs)
	}
	for i := range got {
		if got[i] != addrs[i] {
			t.Errorf("device addresses = %v, want %v", got, addrs)
		}
	}
}

func toSet(as []netip.Addr) map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for _, a := range as {
		m[a] = true
	}
	return m
}
