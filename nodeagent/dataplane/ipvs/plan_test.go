package ipvs

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

var testNode = dataplane.Node{
	Name:      "n1",
	Addresses: []netip.Addr{netip.MustParseAddr("192.168.0.1"), netip.MustParseAddr("fd00::1")},
	PodCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24")},
}

func set(action v1.TrafficAction, backends ...string) *v1.EndpointSet {
	s := &v1.EndpointSet{Action: action}
	for _, b := range backends {
		ap := netip.MustParseAddrPort(b)
		s.Backends = append(s.Backends, &v1.Backend{Address: ap.Addr().String(), Port: uint32(ap.Port()), Weight: 1})
	}
	return s
}

var (
	fwd    = v1.TrafficAction_TRAFFIC_ACTION_FORWARD
	drop   = v1.TrafficAction_TRAFFIC_ACTION_DROP
	reject = v1.TrafficAction_TRAFFIC_ACTION_REJECT
	scopeC = v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER
	scopeL = v1.EndpointScope_ENDPOINT_SCOPE_LOCAL
)

// port builds a TCP port with a ClusterIP and a NodePort frontend.
func port(base, clusterIP string, internal, external *v1.TrafficPolicy, cluster, local *v1.EndpointSet) dataplane.Port {
	sp := &v1.ServicePort{
		Namespace: "ns", Name: base, Family: v1.IPFamily_IP_FAMILY_IPV4, Protocol: v1.Protocol_PROTOCOL_TCP,
		Frontends: []*v1.Frontend{{Kind: v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP, Address: clusterIP, Port: 80}},
		Internal:  internal, External: external,
	}
	if external != nil {
		sp.Frontends = append(sp.Frontends, &v1.Frontend{Kind: v1.FrontendKind_FRONTEND_KIND_NODE_PORT, Port: 30080})
	}
	return dataplane.Port{Base: "ns/" + base + "/v4", Service: sp, Cluster: cluster, Local: local}
}

func TestPlanOutcomes(t *testing.T) {
	cip := vsKey{Proto: 6, Addr: netip.MustParseAddr("10.96.0.1"), Port: 80}
	np := vsKey{Proto: 6, Addr: netip.MustParseAddr("192.168.0.1"), Port: 30080}
	itpC := &v1.TrafficPolicy{Scope: scopeC}
	itpL := &v1.TrafficPolicy{Scope: scopeL}
	etpC := &v1.TrafficPolicy{Scope: scopeC, Masquerade: true}
	etpL := &v1.TrafficPolicy{Scope: scopeL}
	tests := []struct {
		name              string
		p                 dataplane.Port
		cipChain, npChain string
		cipReals, npReals int
	}{
		{"no endpoint anywhere rejects both", port("a", "10.96.0.1", itpC, etpC, set(reject), nil), chainReject, chainReject, 0, 0},
		{"ITP Cluster forwards to the cluster set", port("a", "10.96.0.1", itpC, nil, set(fwd, "10.1.2.2:8080", "10.1.1.2:8080"), nil), chainForwardCluster, "", 2, 0},
		{"ITP Local with no local endpoint drops", port("a", "10.96.0.1", itpL, nil, nil, set(drop)), chainDrop, "", 0, 0},
		{"ETP Cluster masquerades external traffic", port("a", "10.96.0.1", itpC, etpC, set(fwd, "10.1.2.2:8080"), nil), chainForwardCluster, chainForwardMasq, 1, 1},
		{"ETP Local forwards to local endpoints only", port("a", "10.96.0.1", itpC, etpL, set(fwd, "10.1.2.2:8080", "10.1.1.2:8080"), set(fwd, "10.1.1.2:8080")), chainForwardCluster, chainForwardLocal, 2, 1},
		{"ETP Local with no local endpoint drops external, short-circuits local", port("a", "10.96.0.1", itpC, etpL, set(fwd, "10.1.2.2:8080"), set(drop)), chainForwardCluster, chainDropExternal, 1, 1},
		{"forward with no backend rejects", port("a", "10.96.0.1", itpC, nil, set(fwd), nil), chainReject, "", 0, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pl, err := planPort(tc.p, testNode, "rr")
			if err != nil {
				t.Fatal(err)
			}
			if got := pl.Frontends[cip].Chain; got != tc.cipChain {
				t.Errorf("ClusterIP verdict = %q, want %q", got, tc.cipChain)
			}
			if got := len(pl.Services[cip].Reals); got != tc.cipReals {
				t.Errorf("ClusterIP real servers = %d, want %d", got, tc.cipReals)
			}
			if tc.npChain == "" {
				if _, ok := pl.Services[np]; ok {
					t.Errorf("unexpected NodePort virtual server")
				}
				return
			}
			if got := pl.Frontends[np].Chain; got != tc.npChain {
				t.Errorf("NodePort verdict = %q, want %q", got, tc.npChain)
			}
			if got := len(pl.Services[np].Reals); got != tc.npReals {
				t.Errorf("NodePort real servers = %d, want %d", got, tc.npReals)
			}
			if _, ok := pl.Services[vsKey{Proto: 6, Addr: netip.MustParseAddr("fd00::1"), Port: 30080}]; ok {
				t.Errorf("IPv4 port got a NodePort on the node's IPv6 address")
			}
		})
	}
}

func TestPlanSpec(t *testing.T) {
	tests := []struct {
		sched    string
		affinity *v1.SessionAffinity
		v6       bool
		want     vsSpec
		wantErr  bool
	}{
		{"", nil, false, vsSpec{Sched: "rr", Netmask: 0xffffffff}, false},
		{"wlc", nil, true, vsSpec{Sched: "wlc", Netmask: 128}, false},
		{"mh", &v1.SessionAffinity{TimeoutSeconds: 60}, false, vsSpec{Sched: "mh", Flags: ipvsPersistent, Timeout: 60, Netmask: 0xffffffff}, false},
		{"rr", &v1.SessionAffinity{}, false, vsSpec{Sched: "rr", Flags: ipvsPersistent, Timeout: 10800, Netmask: 0xffffffff}, false},
		{"bogus", nil, false, vsSpec{}, true},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%v/v6=%v", tc.sched, tc.affinity, tc.v6), func(t *testing.T) {
			got, err := specFor(&v1.ServicePort{Scheduler: tc.sched, SessionAffinity: tc.affinity}, tc.v6, "rr")
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && got != tc.want {
				t.Errorf("spec = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPlanSourceRangesAndNodePortAddresses(t *testing.T) {
	sp := &v1.ServicePort{
		Family: v1.IPFamily_IP_FAMILY_IPV4, Protocol: v1.Protocol_PROTOCOL_UDP,
		Frontends: []*v1.Frontend{
			{Kind: v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, Address: "203.0.113.7", Port: 53, SourceRanges: []string{"198.51.100.0/24", "10.0.0.0/8", "fd00::/8"}},
			{Kind: v1.FrontendKind_FRONTEND_KIND_NODE_PORT, Port: 30053},
		},
		External: &v1.TrafficPolicy{Scope: scopeC, Masquerade: true},
	}
	node := testNode
	node.Addresses = append(node.Addresses, netip.MustParseAddr("172.16.0.1"))
	node.NodePortAddresses = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12")}
	pl, err := planPort(dataplane.Port{Base: "x", Service: sp, Cluster: set(fwd, "10.1.1.2:53")}, node, "rr")
	if err != nil {
		t.Fatal(err)
	}
	lb := vsKey{Proto: 17, Addr: netip.MustParseAddr("203.0.113.7"), Port: 53}
	if got := pl.Frontends[lb]; got.Ranges != "10.0.0.0/8,198.51.100.0/24" || got.Chain != chainForwardMasq {
		t.Errorf("LB verdict = %+v", got)
	}
	if len(pl.Services) != 2 {
		t.Errorf("virtual servers = %v, want the LB and one NodePort on 172.16.0.1", pl.Services)
	}
	if _, ok := pl.Services[vsKey{Proto: 17, Addr: netip.MustParseAddr("172.16.0.1"), Port: 30053}]; !ok {
		t.Errorf("no NodePort on the allowed node address")
	}
	if len(pl.Addrs) != 1 || pl.Addrs[0] != lb.Addr {
		t.Errorf("dummy addresses = %v, want only the LB IP", pl.Addrs)
	}
}

func TestPlanExternalIPOnTheNodeStaysOffTheDevice(t *testing.T) {
	sp := &v1.ServicePort{
		Family: v1.IPFamily_IP_FAMILY_IPV4, Protocol: v1.Protocol_PROTOCOL_TCP,
		Frontends: []*v1.Frontend{{Kind: v1.FrontendKind_FRONTEND_KIND_EXTERNAL_IP, Address: "192.168.0.1", Port: 443}},
		External:  &v1.TrafficPolicy{Scope: scopeC, Masquerade: true},
	}
	pl, err := planPort(dataplane.Port{Base: "x", Service: sp, Cluster: set(fwd, "10.1.1.2:443")}, testNode, "rr")
	if err != nil {
		t.Fatal(err)
	}
	if len(pl.Addrs) != 0 || len(pl.Services) != 1 {
		t.Errorf("addrs = %v, services = %d: want the virtual server but not the address on our device", pl.Addrs, len(pl.Services))
	}
}
