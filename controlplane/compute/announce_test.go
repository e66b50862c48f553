package compute

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func liveNode(name string, labels ...string) *model.Node {
	n := &model.Node{Name: name, Ready: true, Live: true, Labels: map[string]string{}}
	for _, l := range labels {
		k, v, _ := strings.Cut(l, "=")
		n.Labels[k] = v
	}
	return n
}

func announceEngine(opts AnnounceOptions, nodes ...*model.Node) *Engine {
	e := NewEngine(Options{Announce: opts})
	for _, n := range nodes {
		e.SetNode(n)
	}
	return e
}

// announcing renders what every node announces for default/web: "n1 bgp=a,b l2=c", one line
// per node that holds an announcement, sorted.
func announcing(e *Engine, nodes ...string) string {
	var lines []string
	for _, n := range nodes {
		a := e.Resolve(n, resname.Announce("default", "web")).GetMsg().GetAnnouncement()
		if a == nil {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s bgp=%s l2=%s", n, strings.Join(a.Bgp, ","), strings.Join(a.L2, ",")))
	}
	return strings.Join(lines, "\n")
}

func TestAnnouncementsFollowTrafficPolicyAndLiveness(t *testing.T) {
	bgp := AnnounceOptions{BGP: true}
	lb := loadBalancer("203.0.113.10")
	onN1 := []*model.EndpointSlice{slice("a", ep("10.0.1.1", "n1"))}
	cases := []struct {
		name   string
		opts   AnnounceOptions
		svc    *model.Service
		slices []*model.EndpointSlice
		nodes  []*model.Node
		want   string
	}{
		{"off by default", AnnounceOptions{}, svc(lb), onN1, nil, ""},
		{"cluster policy: every live node", bgp, svc(lb), onN1, nil,
			"n1 bgp=203.0.113.10 l2=\nn2 bgp=203.0.113.10 l2=\nn3 bgp=203.0.113.10 l2="},
		{"local policy: only nodes with a ready local endpoint", bgp, svc(lb, etpLocal), onN1, nil,
			"n1 bgp=203.0.113.10 l2="},
		{"local policy: a not-ready endpoint does not count", bgp, svc(lb, etpLocal),
			[]*model.EndpointSlice{slice("a", ep("10.0.1.1", "n1"), ep("10.0.2.1", "n2", notReady))}, nil,
			"n1 bgp=203.0.113.10 l2="},
		{"nothing ready anywhere: nothing announced", bgp, svc(lb),
			[]*model.EndpointSlice{slice("a", ep("10.0.1.1", "n1", notReady))}, nil, ""},
		{"a node that is not live takes no default", bgp, svc(lb), onN1,
			[]*model.Node{{Name: "n3", Ready: true}},
			"n1 bgp=203.0.113.10 l2=\nn2 bgp=203.0.113.10 l2=\nn3 bgp= l2="},
		{"a node that is not ready announces nothing", bgp, svc(lb, etpLocal),
			[]*model.EndpointSlice{slice("a", ep("10.0.1.1", "n1"), ep("10.0.2.1", "n2"))},
			[]*model.Node{{Name: "n2", Live: true}},
			"n1 bgp=203.0.113.10 l2="},
		{"cluster IPs only when asked (bare metal's VIPs), by internal policy", AnnounceOptions{BGP: true, ClusterIPs: true}, svc(itpLocal), onN1, nil,
			"n1 bgp=10.96.0.10 l2="},
		{"external IPs only when asked", AnnounceOptions{BGP: true, ExternalIPs: true},
			svc(func(s *model.Service) { s.ExternalIPs = []netip.Addr{netip.MustParseAddr("198.51.100.7")} }), onN1, nil,
			"n1 bgp=198.51.100.7 l2=\nn2 bgp=198.51.100.7 l2=\nn3 bgp=198.51.100.7 l2="},
		{"ipMode Proxy is not attracted", bgp,
			svc(lb, func(s *model.Service) { s.LoadBalancerIngress[0].IPMode = model.IPModeProxy }), onN1, nil, ""},
		{"another class's addresses are left alone", AnnounceOptions{BGP: true, Classes: []string{"ganglion.io/lb"}},
			svc(lb, func(s *model.Service) { s.LoadBalancerClass = "metallb.io/lb" }), onN1, nil, ""},
		{"our class is announced", AnnounceOptions{BGP: true, Classes: []string{"ganglion.io/lb"}},
			svc(lb, etpLocal, func(s *model.Service) { s.LoadBalancerClass = "ganglion.io/lb" }), onN1, nil,
			"n1 bgp=203.0.113.10 l2="},
		{"an address in a pool is announced", AnnounceOptions{BGP: true, Pools: []netip.Prefix{netip.MustParsePrefix("203.0.113.0/24")}},
			svc(lb, etpLocal), onN1, nil, "n1 bgp=203.0.113.10 l2="},
		{"an address outside the pools is not", AnnounceOptions{BGP: true, Pools: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
			svc(lb, etpLocal), onN1, nil, ""},
		{"an IPv6 address needs an IPv6 endpoint", bgp, svc(loadBalancer("2001:db8::10"), etpLocal), onN1, nil, ""},
		{"L2: the one owner of a local address is the node with the endpoint", AnnounceOptions{L2: true}, svc(lb, etpLocal), onN1, nil,
			"n1 bgp= l2=203.0.113.10"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := announceEngine(c.opts, liveNode("n1"), liveNode("n2"), liveNode("n3"))
			for _, n := range c.nodes {
				e.SetNode(n)
			}
			e.SetService(c.svc)
			for _, sl := range c.slices {
				e.SetSlice(sl)
			}
			if got := announcing(e, "n1", "n2", "n3"); got != c.want {
				t.Errorf("announcements:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// owners returns, per address, the nodes that answer ARP/NDP for it.
func owners(e *Engine, nodes ...string) map[string][]string {
	out := map[string][]string{}
	for _, n := range nodes {
		for _, ip := range e.Resolve(n, resname.Announce("default", "web")).GetMsg().GetAnnouncement().GetL2() {
			out[ip] = append(out[ip], n)
		}
	}
	return out
}

func TestL2OwnerIsOneStableNodeAndFailsOver(t *testing.T) {
	nodes := []string{"n1", "n2", "n3", "n4"}
	e := announceEngine(AnnounceOptions{L2: true}, liveNode("n1"), liveNode("n2"), liveNode("n3"), liveNode("n4"))
	var ips []string
	for i := range 40 {
		ips = append(ips, fmt.Sprintf("203.0.113.%d", i+1))
	}
	e.SetService(svc(loadBalancer(ips...)))
	e.SetSlice(slice("a", ep("10.0.1.1", "n1")))

	before := owners(e, nodes...)
	perNode := map[string]int{}
	for _, ip := range ips {
		if len(before[ip]) != 1 {
			t.Fatalf("%s owned by %v, want exactly one node", ip, before[ip])
		}
		perNode[before[ip][0]]++
	}
	for _, n := range nodes {
		if perNode[n] == 0 {
			t.Errorf("node %s owns none of 40 addresses: owners do not spread (%v)", n, perNode)
		}
	}

	// The same inputs in another order (another replica) elect the same owners.
	other := announceEngine(AnnounceOptions{L2: true}, liveNode("n4"), liveNode("n3"), liveNode("n2"), liveNode("n1"))
	other.SetSlice(slice("a", ep("10.0.1.1", "n1")))
	other.SetService(svc(loadBalancer(ips...)))
	if got := owners(other, nodes...); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("another replica elects other owners:\n%v\nwant\n%v", got, before)
	}

	// n2's agent goes away: only its addresses move, each to exactly one live node.
	d := e.SetNode(&model.Node{Name: "n2", Ready: true})
	after := owners(e, nodes...)
	for _, ip := range ips {
		if len(after[ip]) != 1 || after[ip][0] == "n2" {
			t.Fatalf("%s owned by %v after n2 left", ip, after[ip])
		}
		if before[ip][0] != "n2" && after[ip][0] != before[ip][0] {
			t.Errorf("%s moved from %s to %s though its owner stayed", ip, before[ip][0], after[ip][0])
		}
	}
	if len(d.Nodes) == 0 {
		t.Error("the failover changed no node's state in the delta")
	}

	// n2 comes back: it takes back exactly what it had.
	e.SetNode(liveNode("n2"))
	if got := owners(e, nodes...); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Errorf("after n2 returned:\n%v\nwant\n%v", got, before)
	}
}

func TestBGPConfigGoesToTheNodesOfItsGroup(t *testing.T) {
	rackA := &v1.BGPConfig{LocalAsn: 64512, Peers: []*v1.BGPPeer{{Address: "192.168.77.1", Asn: 64500}}}
	rest := &v1.BGPConfig{LocalAsn: 64513, Peers: []*v1.BGPPeer{{Address: "192.168.78.1", Asn: 64500}}}
	e := announceEngine(AnnounceOptions{BGP: true, BGPGroups: []BGPGroup{
		{Selector: map[string]string{"rack": "a"}, Config: rackA},
		{Selector: map[string]string{"rack": "b"}, Config: rest},
	}}, liveNode("n1", "rack=a"), liveNode("n2", "rack=b"), liveNode("n3"))
	asn := func(n string) uint32 { return e.Resolve(n, resname.NodeBGP).GetMsg().GetBgp().GetLocalAsn() }
	if asn("n1") != 64512 || asn("n2") != 64513 || asn("n3") != 0 {
		t.Fatalf("local ASNs n1 %d n2 %d n3 %d, want 64512 64513 none", asn("n1"), asn("n2"), asn("n3"))
	}
	d := e.SetNode(liveNode("n3", "rack=a"))
	if asn("n3") != 64512 || !slices.Contains(d.Nodes["n3"], resname.NodeBGP) {
		t.Errorf("relabelled n3: ASN %d, delta %v; want 64512 and node/bgp in the delta", asn("n3"), d.Nodes)
	}
	e.DeleteNode("n1")
	if asn("n1") != 0 {
		t.Error("a deleted node keeps its BGP config")
	}
}

func TestExplainAnnouncementsSaysWhyANodeDoesNotAttract(t *testing.T) {
	e := announceEngine(AnnounceOptions{BGP: true, L2: true}, liveNode("n1"), liveNode("n2"), &model.Node{Name: "n3", Ready: true}, &model.Node{Name: "n4", Live: true})
	e.SetService(svc(loadBalancer("203.0.113.10"), etpLocal))
	e.SetSlice(slice("a", ep("10.0.1.1", "n1")))
	key := model.ServiceKey{Namespace: "default", Name: "web"}
	cases := map[string]string{
		"n1": "bgp=true l2=true owner=n1 reason=",
		"n2": "bgp=false l2=false owner=n1 reason=externalTrafficPolicy Local: no ready endpoint on this node",
		"n3": "bgp=false l2=false owner=n1 reason=no agent of this node is connected",
		"n4": "bgp=false l2=false owner=n1 reason=node not ready",
		"n5": "bgp=false l2=false owner=n1 reason=the brain does not know this node",
	}
	for node, want := range cases {
		ex := e.ExplainAnnouncements(node, key)
		if len(ex) != 1 {
			t.Fatalf("%s: %d explanations, want 1", node, len(ex))
		}
		x := ex[0]
		if got := fmt.Sprintf("bgp=%v l2=%v owner=%s reason=%s", x.Bgp, x.L2, x.L2Owner, x.Reason); got != want {
			t.Errorf("%s: %s, want %s", node, got, want)
		}
	}
	e.SetSlice(slice("a", ep("10.0.1.1", "n1", notReady)))
	if r := e.ExplainAnnouncements("n1", key)[0].Reason; r != "no ready endpoint of its family anywhere: not attracted" {
		t.Errorf("nothing ready: reason %q", r)
	}
}
