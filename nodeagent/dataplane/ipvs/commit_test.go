package ipvs

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func withLB(p dataplane.Port) dataplane.Port {
	p.Service.Frontends = append(p.Service.Frontends, &v1.Frontend{
		Kind: v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, Address: "203.0.113.9", Port: 80, SourceRanges: []string{"198.51.100.0/24"}})
	return p
}

func TestRestartPlansOnlyTheUnreadSourceRangeChain(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	ports := []dataplane.Port{svcPort(0, "10.1.2.2:8080"), withLB(svcPort(1, "10.1.2.2:8080"))}
	apply(t, d, dataplane.Change{Upserts: ports})
	d.Close()
	d2 := startFake(t, k)
	// Every element, address and server is adopted as it is; only the LB's chain, whose rules a
	// restart does not read back, is rewritten, and the set elements of the device addresses.
	want := `port ns/s0/v4
  nft add svc-addr 10.96.0.1
port ns/s1/v4
  nft add fe tcp/203.0.113.9:80 goto sr [198.51.100.0/24] -> fwd-masq
  nft add svc-addr 10.96.0.2
  nft add svc-addr 203.0.113.9
`
	if got := d2.Plan(dataplane.Change{Upserts: ports}).String(); got != want {
		t.Errorf("plan after a restart:\n%s\nwant\n%s", got, want)
	}
}

func TestVerdictChangeReplacesTheElement(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(0, "10.1.2.2:8080")}})
	rej := svcPort(0)
	rej.Cluster = &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_REJECT}
	// The kernel does not overwrite an element: the old one goes first, in the same transaction.
	want := `port ns/s0/v4
  nft del fe tcp/10.96.0.1:80 goto fwd-clusterip
  nft add fe tcp/10.96.0.1:80 goto reject-all
  nft del fe tcp/192.168.0.1:30000 goto fwd-masq
  nft add fe tcp/192.168.0.1:30000 goto reject-all
  ipvs drain-dest tcp/10.96.0.1:80 10.1.2.2:8080
  ipvs drain-dest tcp/192.168.0.1:30000 10.1.2.2:8080
`
	if got := d.Plan(dataplane.Change{Upserts: []dataplane.Port{rej}}).String(); got != want {
		t.Fatalf("plan:\n%s\nwant\n%s", got, want)
	}
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{rej}})
	if dump := k.nft.Dump(); !strings.Contains(dump, "10.96.0.1 . tcp . 80 : goto reject-all") {
		t.Errorf("verdict not replaced:\n%s", dump)
	}
}

func TestMarksOfOwnershipOutliveTheirServer(t *testing.T) {
	k := newFakeKernel()
	d := startFake(t, k)
	p := withLB(svcPort(0, "10.1.1.2:8080"))
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{p}})
	k.ipvs.failDel = errors.New("netlink busy")
	errs := d.Apply(context.Background(), dataplane.Change{Removals: []string{p.Base}})
	if errs[p.Base] == nil {
		t.Fatalf("removal with failing deletions: errors %v, want one for %s", errs, p.Base)
	}
	// The servers are still there, so the elements and the address that mark them ours stay.
	if tidy := planTidy(&d.view).String(); tidy != "tidy\n" {
		t.Errorf("tidy while the servers remain:\n%s", tidy)
	}
	if dump := k.nft.Dump(); !strings.Contains(dump, "203.0.113.9 . tcp . 80 : goto sr-") || !k.dev.addrs[cip0.Addr] {
		t.Errorf("marks went while their servers remain:\n%s", dump)
	}
	k.ipvs.failDel = nil
	apply(t, d, dataplane.Change{Removals: []string{p.Base}})
	if dump := k.nft.Dump(); strings.Contains(dump, "203.0.113.9") || strings.Contains(dump, "sr-") ||
		strings.Contains(dump, "10.1.1.2 . 10.1.1.2") || len(k.dev.addrs) != 0 || len(k.ipvs.svcs) != 0 {
		t.Errorf("removal left %d servers, addresses %v, table:\n%s", len(k.ipvs.svcs), k.dev.addrs, dump)
	}
}
