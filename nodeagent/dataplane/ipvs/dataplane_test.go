package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func startFake(t *testing.T, k *fakeKernel) *Dataplane {
	t.Helper()
	d := newDataplane(Options{Node: testNode, DrainTimeout: time.Minute}, k.ipvs, k.nft, k.dev, k.ct)
	if err := d.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

func apply(t *testing.T, d *Dataplane, c dataplane.Change) {
	t.Helper()
	if errs := d.Apply(context.Background(), c); len(errs) > 0 {
		t.Fatalf("Apply: %v", errs)
	}
}

// svcPort is service i: ClusterIP 10.96.x.y:80 and NodePort 30000+i, ETP Cluster.
func svcPort(i int, backends ...string) dataplane.Port {
	p := port(fmt.Sprintf("s%d", i), fmt.Sprintf("10.96.%d.%d", i/250, i%250+1),
		&v1.TrafficPolicy{Scope: scopeC}, &v1.TrafficPolicy{Scope: scopeC, Masquerade: true}, set(fwd, backends...), nil)
	p.Service.Frontends[1].Port = uint32(30000 + i)
	return p
}

var cip0 = vsKey{Proto: 6, Addr: netip.MustParseAddr("10.96.0.1"), Port: 80}

func TestEndpointChangeCostDoesNotGrowWithServices(t *testing.T) {
	cost := func(n int) (string, int) {
		k := newFakeKernel()
		d := startFake(t, k)
		var all []dataplane.Port
		for i := range n {
			all = append(all, svcPort(i, "10.1.2.2:8080", "10.1.2.3:8080"))
		}
		apply(t, d, dataplane.Change{Upserts: all})
		before, dumps, commits := k.ipvs.opCount(), k.ipvs.dumps, k.nft.commits
		change := dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080", "10.1.2.4:8080")}}
		plan := d.Plan(change).String()
		apply(t, d, change)
		if k.ipvs.dumps != dumps || k.nft.commits != commits {
			t.Errorf("an endpoint change dumped IPVS or touched nftables")
		}
		return plan, k.ipvs.opCount() - before
	}
	// Two frontends (ClusterIP, NodePort), each: add the new real server, drain the old one.
	want := `port ns/s0/v4
  ipvs new-dest tcp/10.96.0.1:80 10.1.2.4:8080 w=1
  ipvs drain-dest tcp/10.96.0.1:80 10.1.2.3:8080
  ipvs new-dest tcp/192.168.0.1:30000 10.1.2.4:8080 w=1
  ipvs drain-dest tcp/192.168.0.1:30000 10.1.2.3:8080
`
	for _, n := range []int{3, 300} {
		plan, ops := cost(n)
		if plan != want {
			t.Errorf("with %d services the plan is\n%s\nwant\n%s", n, plan, want)
		}
		if ops != 4 {
			t.Errorf("with %d services the commit issued %d IPVS operations, want the plan's 4", n, ops)
		}
	}
}

func TestTCPRealServerDrainsThenGoes(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	old := netip.MustParseAddrPort("10.1.2.2:8080")
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080", "10.1.2.3:8080")}})
	k.ipvs.setConns(cip0, old, 1)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.3:8080")}})
	if w, ok := k.ipvs.reals(cip0)[old]; !ok || w != 0 {
		t.Fatalf("leaving real server: present=%v weight=%d, want present with weight 0", ok, w)
	}
	if err := d.drainTick(); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.ipvs.reals(cip0)[old]; !ok {
		t.Fatalf("real server with an open connection was deleted")
	}
	k.ipvs.setConns(cip0, old, 0)
	if err := d.drainTick(); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.ipvs.reals(cip0)[old]; ok {
		t.Fatalf("drained real server was not deleted")
	}
	if d.Draining() != 0 {
		t.Errorf("still draining %d", d.Draining())
	}
}

func TestDrainingRealServerComesBack(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080", "10.1.2.3:8080")}})
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.3:8080")}})
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080", "10.1.2.3:8080")}})
	if w := k.ipvs.reals(cip0)[netip.MustParseAddrPort("10.1.2.2:8080")]; w != 1 {
		t.Errorf("returning real server weight = %d, want 1", w)
	}
	if d.Draining() != 0 {
		t.Errorf("still draining %d", d.Draining())
	}
}

func TestUDPRealServerGoesAtOnceWithItsFlows(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	p := svcPort(0, "10.1.2.2:53", "10.1.2.3:53")
	p.Service.Protocol = v1.Protocol_PROTOCOL_UDP
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{p}})
	p = svcPort(0, "10.1.2.3:53")
	p.Service.Protocol = v1.Protocol_PROTOCOL_UDP
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{p}})
	udp := cip0
	udp.Proto = 17
	if _, ok := k.ipvs.reals(udp)[netip.MustParseAddrPort("10.1.2.2:53")]; ok {
		t.Errorf("UDP real server kept")
	}
	if want := "udp/10.96.0.1:80->10.1.2.2:53"; !strings.Contains(strings.Join(k.ct.deleted, " "), want) {
		t.Errorf("conntrack deletions = %v, want one like %s", k.ct.deleted, want)
	}
}

func TestRestartAdoptsWithoutTouchingIPVS(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	var all []dataplane.Port
	keep := map[string]bool{}
	for i := range 20 {
		all = append(all, svcPort(i, "10.1.2.2:8080"))
		keep[all[i].Base] = true
	}
	all[3].Service.Frontends = append(all[3].Service.Frontends, &v1.Frontend{
		Kind: v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, Address: "203.0.113.9", Port: 80, SourceRanges: []string{"198.51.100.0/24"}})
	apply(t, d, dataplane.Change{Upserts: all})
	d.Close()

	before := k.ipvs.opCount()
	d2 := startFake(t, k)
	apply(t, d2, dataplane.Change{Upserts: all})
	if err := d2.Prune(context.Background(), keep); err != nil {
		t.Fatal(err)
	}
	if got := k.ipvs.opCount() - before; got != 0 {
		t.Errorf("restart with unchanged state cost %d IPVS ops, want 0", got)
	}
	if len(k.ipvs.svcs) != 41 {
		t.Errorf("virtual servers after restart = %d, want 41", len(k.ipvs.svcs))
	}
}

func TestPruneRemovesLeftoversOfAnEarlierRun(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080"), svcPort(1, "10.1.2.2:8080")}})
	d.Close()
	d2 := startFake(t, k)
	apply(t, d2, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080")}})
	if err := d2.Prune(context.Background(), map[string]bool{"ns/s0/v4": true}); err != nil {
		t.Fatal(err)
	}
	if len(k.ipvs.svcs) != 2 {
		t.Errorf("virtual servers = %d, want 2 (s0's ClusterIP and NodePort)", len(k.ipvs.svcs))
	}
	if k.dev.addrs[netip.MustParseAddr("10.96.0.2")] {
		t.Errorf("s1's ClusterIP is still on the device")
	}
	if strings.Contains(k.nft.Dump(), "10.96.0.2") {
		t.Errorf("s1's frontend is still in nftables:\n%s", k.nft.Dump())
	}
}

func TestFailedDumpDeletesNothing(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080"), svcPort(1, "10.1.2.2:8080")}})
	d.Close()
	k.ipvs.failDump = true
	d2 := startFake(t, k)
	// The port's servers exist but cannot be read: the apply fails rather than guess.
	if errs := d2.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080")}}); len(errs) != 1 {
		t.Errorf("Apply errors = %v, want one for s0", errs)
	}
	if err := d2.Prune(context.Background(), map[string]bool{"ns/s0/v4": true}); err == nil {
		t.Errorf("Prune on an unknown kernel state succeeded")
	}
	if err := d2.Reconcile(context.Background()); err == nil {
		t.Errorf("Reconcile on an unknown kernel state succeeded")
	}
	if len(k.ipvs.svcs) != 4 {
		t.Errorf("virtual servers = %d, want all 4 kept while the dump fails", len(k.ipvs.svcs))
	}
	if got := len(k.ipvs.reals(cip0)); got != 1 {
		t.Errorf("s0 real servers = %d, want 1", got)
	}
	if !k.dev.addrs[netip.MustParseAddr("10.96.0.2")] || !strings.Contains(k.nft.Dump(), "10.96.0.2") {
		t.Errorf("s1 lost its marks of ownership while its server could not be deleted")
	}
}

func TestReconcileRepairsDrift(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080", "10.1.2.3:8080")}})
	delete(k.ipvs.svcs, cip0)
	delete(k.dev.addrs, cip0.Addr)
	stray := vsKey{Proto: 6, Addr: cip0.Addr, Port: 9999}
	_ = k.ipvs.NewService(toService(stray, vsSpec{Sched: "rr", Netmask: 0xffffffff}))
	if err := d.Prune(context.Background(), map[string]bool{"ns/s0/v4": true}); err != nil {
		t.Fatal(err)
	}
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := len(k.ipvs.reals(cip0)); got != 2 {
		t.Errorf("repaired ClusterIP has %d real servers, want 2", got)
	}
	if !k.dev.addrs[cip0.Addr] {
		t.Errorf("ClusterIP not back on the device")
	}
	if _, ok := k.ipvs.svcs[stray]; ok {
		t.Errorf("virtual server added by hand on our address survived")
	}
}

func TestConflictingPortIsRefused(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	a := svcPort(0, "10.1.2.2:8080")
	b := svcPort(0, "10.1.2.3:8080")
	b.Base = "ns/other/v4"
	errs := d.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{a, b}})
	if len(errs) != 1 || errs[b.Base] == nil {
		t.Fatalf("errors = %v, want one for %s", errs, b.Base)
	}
}

func TestReconcileBeforePruneKeepsAnEarlierRunsServers(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080"), svcPort(1, "10.1.2.2:8080")}})
	d.Close()
	d2 := startFake(t, k)
	// The restarted agent has re-applied only part of its state when a periodic repair runs.
	apply(t, d2, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080")}})
	if err := d2.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(k.ipvs.svcs) != 4 {
		t.Errorf("virtual servers = %d, want all 4 kept until Prune", len(k.ipvs.svcs))
	}
	if !k.dev.addrs[netip.MustParseAddr("10.96.0.2")] || !strings.Contains(k.nft.Dump(), "10.96.0.2") {
		t.Errorf("s1's address or frontend element went before Prune")
	}
}

func TestHairpinEntriesFollowLocalEndpoints(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	hair := "10.1.1.2 . 10.1.1.2"
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.1.2:8080", "10.1.2.2:8080"), svcPort(1, "10.1.1.2:8080")}})
	if dump := k.nft.Dump(); !strings.Contains(dump, hair) || strings.Contains(dump, "10.1.2.2 . 10.1.2.2") {
		t.Fatalf("want a hairpin entry for the local endpoint only:\n%s", dump)
	}
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080")}})
	if !strings.Contains(k.nft.Dump(), hair) {
		t.Fatalf("hairpin entry went while s1 still uses the endpoint")
	}
	apply(t, d, dataplane.Change{Removals: []string{"ns/s1/v4"}})
	if strings.Contains(k.nft.Dump(), hair) {
		t.Fatalf("hairpin entry stayed after its last use")
	}
}

func TestServiceAddressesAreNeverNodeAddresses(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080")}})
	d.Close()
	// The restarted agent lists every local address, the ClusterIP on our device included.
	k2opts := Options{Node: testNode}
	k2opts.Node.Addresses = append(slices.Clone(testNode.Addresses), cip0.Addr)
	d2 := newDataplane(k2opts, k.ipvs, k.nft, k.dev, k.ct)
	if err := d2.start(context.Background()); err != nil {
		t.Fatal(err)
	}
	apply(t, d2, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080")}})
	if _, ok := k.ipvs.svcs[vsKey{Proto: 6, Addr: cip0.Addr, Port: 30000}]; ok {
		t.Errorf("a NodePort opened on a ClusterIP")
	}
}
