package compute

import (
	"cmp"
	"hash/fnv"
	"maps"
	"net/netip"
	"slices"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// AnnounceOptions say which outside addresses the nodes make the network send to them, and how
// (README, "Reaching services from outside"). The zero value announces nothing.
type AnnounceOptions struct {
	// L2 elects one owner node per address, which answers ARP/NDP for it.
	L2 bool
	// BGP has every eligible node advertise a host route for the address.
	BGP bool
	// ClusterIPs announces cluster IPs too: in bare-metal mode they are the services' VIPs,
	// which outside clients use. Their eligible nodes follow internalTrafficPolicy.
	ClusterIPs bool
	// ExternalIPs announces spec.externalIPs, besides load-balancer ingress IPs.
	ExternalIPs bool
	// Classes and Pools limit what is announced, so another announcer's addresses are never
	// fought over: an address is announced when its service's loadBalancerClass is one of
	// Classes or the address is in one of Pools. Both empty: every address.
	Classes []string
	Pools   []netip.Prefix
	// BGPGroups give nodes their peering: a node takes the first group whose selector its
	// labels match. A node in no group has no BGP peers.
	BGPGroups []BGPGroup
}

// BGPGroup is the BGP peering of the nodes whose labels include every pair of Selector.
type BGPGroup struct {
	Selector map[string]string
	Config   *v1.BGPConfig
}

func (o AnnounceOptions) enabled() bool { return o.L2 || o.BGP }

// announced lists the service's addresses the options announce, each with whether only nodes
// with a ready local endpoint may attract it, sorted by address.
func (o AnnounceOptions) announced(svc *model.Service) []announcedAddr {
	if !o.enabled() {
		return nil
	}
	var out []announcedAddr
	add := func(ip netip.Addr, local bool) {
		if ip.IsValid() && o.allows(svc, ip) {
			out = append(out, announcedAddr{ip, local})
		}
	}
	if o.ClusterIPs {
		for _, ip := range svc.ClusterIPs {
			add(ip, svc.InternalTrafficLocal)
		}
	}
	if svc.Type == model.TypeLoadBalancer {
		for _, ing := range svc.LoadBalancerIngress {
			// A Proxy-mode load balancer sends to the nodes itself: nothing to attract.
			if ing.IPMode != model.IPModeProxy {
				add(ing.IP, svc.ExternalTrafficLocal)
			}
		}
	}
	if o.ExternalIPs {
		for _, ip := range svc.ExternalIPs {
			add(ip, svc.ExternalTrafficLocal)
		}
	}
	slices.SortFunc(out, func(a, b announcedAddr) int {
		return cmp.Or(a.ip.Compare(b.ip), cmp.Compare(boolInt(b.local), boolInt(a.local)))
	})
	// One address reached two ways (a cluster IP that is also an external IP) is Local if
	// either way is: a node without a local endpoint would drop that traffic.
	return slices.CompactFunc(out, func(a, b announcedAddr) bool { return a.ip == b.ip })
}

func (o AnnounceOptions) allows(svc *model.Service, ip netip.Addr) bool {
	if len(o.Classes) == 0 && len(o.Pools) == 0 {
		return true
	}
	return slices.Contains(o.Classes, svc.LoadBalancerClass) ||
		slices.ContainsFunc(o.Pools, func(p netip.Prefix) bool { return p.Contains(ip) })
}

type announcedAddr struct {
	ip    netip.Addr
	local bool
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// announceLayers computes a service's Announcement as each node sees it, or nil when no node
// announces anything. A node is eligible for an address when it is live and ready and, for a
// Local address, has a ready endpoint of the address's family; a Cluster address is announced
// only while the service has a ready endpoint of its family somewhere (MetalLB's rule: a
// service with nothing behind it is not attracted). Every eligible node advertises the address
// over BGP; the eligible node with the highest rendezvous hash of (address, node) owns it for
// ARP/NDP, so owners spread over nodes and an address moves only when its owner stops being
// eligible or a node that beats it becomes eligible.
//
// The layers keep the common case shared: the Cluster addresses' BGP announcement is the
// default, and only nodes that differ (not live, with Local addresses, owning L2 addresses)
// have their own.
func (e *Engine) announceLayers(svc *model.Service, slicesOfSvc []*model.EndpointSlice) *layers {
	addrs := e.opts.Announce.announced(svc)
	if len(addrs) == 0 {
		return nil
	}
	withReady := readyEndpointNodes(slicesOfSvc)
	live := e.liveNodes()
	type nodeAddrs struct{ bgp, l2 []netip.Addr }
	per := map[string]*nodeAddrs{}
	at := func(node string) *nodeAddrs {
		if per[node] == nil {
			per[node] = &nodeAddrs{}
		}
		return per[node]
	}
	var shared []netip.Addr // the Cluster addresses every live node advertises
	for _, a := range addrs {
		fam := model.FamilyOf(a.ip)
		var eligible []string
		switch {
		case a.local:
			for _, n := range live {
				if withReady[fam][n] {
					eligible = append(eligible, n)
				}
			}
		case len(withReady[fam]) > 0:
			eligible = live
			if e.opts.Announce.BGP {
				shared = append(shared, a.ip)
			}
		}
		if len(eligible) == 0 {
			continue
		}
		if e.opts.Announce.BGP && a.local {
			for _, n := range eligible {
				at(n).bgp = append(at(n).bgp, a.ip)
			}
		}
		if e.opts.Announce.L2 {
			owner := at(l2Owner(a.ip, eligible))
			owner.l2 = append(owner.l2, a.ip)
		}
	}
	if len(shared) == 0 && len(per) == 0 {
		return nil
	}
	name := resname.Announce(svc.Namespace, svc.Name)
	seal := func(bgp, l2 []netip.Addr) *Resource {
		a := &v1.Announcement{Namespace: svc.Namespace, Name: svc.Name, Bgp: addrStrings(bgp), L2: addrStrings(l2)}
		return newResource(name, &v1.Resource{Content: &v1.Resource_Announcement{Announcement: a}})
	}
	out := &layers{byNode: map[string]*Resource{}}
	if len(shared) > 0 {
		out.def = seal(shared, nil)
		// A node that may not announce must not take the default.
		for n, node := range e.nodes {
			if !node.Live || !node.Ready {
				out.byNode[n] = seal(nil, nil)
			}
		}
	}
	for n, a := range per {
		out.byNode[n] = seal(append(slices.Clone(shared), a.bgp...), a.l2)
	}
	return out
}

// addrStrings sorts addresses and renders them once each.
func addrStrings(addrs []netip.Addr) []string {
	slices.SortFunc(addrs, netip.Addr.Compare)
	addrs = slices.Compact(addrs)
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i] = a.String()
	}
	return out
}

// readyEndpointNodes returns, per family, the nodes with a ready endpoint of the service.
func readyEndpointNodes(slicesOfSvc []*model.EndpointSlice) map[model.Family]map[string]bool {
	out := map[model.Family]map[string]bool{}
	for _, sl := range slicesOfSvc {
		for _, ep := range sl.Endpoints {
			if !ep.Ready || ep.NodeName == "" {
				continue
			}
			fam := model.FamilyOf(ep.Address)
			if out[fam] == nil {
				out[fam] = map[string]bool{}
			}
			out[fam][ep.NodeName] = true
		}
	}
	return out
}

// liveNodes returns the names of the nodes that may announce, sorted.
func (e *Engine) liveNodes() []string {
	var out []string
	for n, node := range e.nodes {
		if node.Live && node.Ready {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// l2Owner picks the node with the highest rendezvous hash of (ip, node): every replica picks
// the same one, and removing a node moves only the addresses it owned.
func l2Owner(ip netip.Addr, nodes []string) string {
	var best string
	var bestScore uint64
	for _, n := range nodes {
		h := fnv.New64a()
		h.Write(ip.AsSlice())
		h.Write([]byte{0})
		h.Write([]byte(n))
		if s := h.Sum64(); best == "" || s > bestScore {
			best, bestScore = n, s
		}
	}
	return best
}

// announceChanged reports whether a node's change can move announcements: its liveness, or its
// labels when they pick its BGP group.
func announceChanged(before, after *model.Node) bool {
	canAnnounce := func(n *model.Node) bool { return n != nil && n.Live && n.Ready }
	return canAnnounce(before) != canAnnounce(after) || (before == nil) != (after == nil)
}

// reannounce recomputes every service with addresses to announce, after a node's change.
func (e *Engine) reannounce() Delta {
	var d Delta
	for _, key := range slices.SortedFunc(maps.Keys(e.services), func(a, b model.ServiceKey) int {
		return cmp.Or(cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	}) {
		if len(e.opts.Announce.announced(e.services[key])) > 0 {
			d.Merge(e.recompute(key))
		}
	}
	return d
}

// bgpConfig returns the node's BGP resource, or nil when it has no peers.
func (e *Engine) bgpConfig(node *model.Node) *Resource {
	if node == nil || !e.opts.Announce.BGP {
		return nil
	}
	for _, g := range e.opts.Announce.BGPGroups {
		if matches(g.Selector, node.Labels) {
			return newResource(resname.NodeBGP, &v1.Resource{Content: &v1.Resource_Bgp{Bgp: g.Config}})
		}
	}
	return nil
}

func matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if l, ok := labels[k]; !ok || l != v {
			return false
		}
	}
	return true
}

// setNodeBGP places the node's BGP resource and reports whether it changed.
func (e *Engine) setNodeBGP(name string) Delta {
	old := e.byNode[name][resname.NodeBGP]
	fresh := e.bgpConfig(e.nodes[name])
	if version(old) == version(fresh) {
		return Delta{}
	}
	if fresh == nil {
		delete(e.byNode[name], resname.NodeBGP)
		if len(e.byNode[name]) == 0 {
			delete(e.byNode, name)
		}
	} else {
		if e.byNode[name] == nil {
			e.byNode[name] = map[string]*Resource{}
		}
		e.byNode[name][resname.NodeBGP] = fresh
	}
	var d Delta
	d.addNode(name, resname.NodeBGP)
	return d
}
