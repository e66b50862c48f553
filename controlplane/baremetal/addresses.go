package baremetal

import (
	"fmt"
	"net/netip"
	"sort"

	"github.com/ganglion-proxy/ganglion/store"
)

// specialAddress says why no service or backend may use a, or "" when it is an ordinary
// address: traffic to it would stay on the node (loopback, unspecified), reach a whole group
// (multicast) or whatever sits on the node's link, the cloud metadata service at
// 169.254.169.254 included (link-local).
func specialAddress(a netip.Addr) string {
	switch {
	case a.IsLoopback():
		return "a loopback address"
	case a.IsUnspecified():
		return "the unspecified address"
	case a.IsMulticast():
		return "a multicast address"
	case a.IsLinkLocalUnicast():
		return "a link-local address, where cloud metadata services live"
	}
	return ""
}

// allowed says whether the operator allowed a range holding a.
func (s Settings) allowed(a netip.Addr) bool {
	for _, p := range s.AllowedAddressRanges {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkAddress refuses a special address outside the allowed ranges.
func checkAddress(o *Object, field string, a netip.Addr, set Settings) error {
	if why := specialAddress(a); why != "" && !set.allowed(a) {
		return o.fail(field, "%s is %s; an operator may allow a range with --allow-address-range", a, why)
	}
	return nil
}

// fieldAddress is an address a document gives, and the field it is in.
type fieldAddress struct {
	field string
	ip    netip.Addr
}

// serviceAddresses are the addresses a service takes traffic on, whatever form it came in:
// a Kubernetes Service's clusterIPs, externalIPs, loadBalancerIP and load-balancer ingress are
// stored as these fields. Unparsable ones (refused by validation) are left out.
func serviceAddresses(sp *ServiceSpec) []fieldAddress {
	var out []fieldAddress
	for _, list := range []struct {
		field string
		ips   []string
	}{{"spec.vips", sp.VIPs}, {"spec.externalIPs", sp.ExternalIPs}, {"spec.loadBalancerIPs", sp.LoadBalancerIPs}} {
		for i, v := range list.ips {
			if ip, err := netip.ParseAddr(v); err == nil {
				out = append(out, fieldAddress{fmt.Sprintf("%s[%d]", list.field, i), ip.Unmap()})
			}
		}
	}
	return out
}

// ownAddress is an address of a node: declared by a Node, or registered by the node's agent.
type ownAddress struct {
	node string
	// declared is the Node document of this apply that gives it, at field; nil otherwise.
	declared *Object
	field    string
}

// ownAddresses are the nodes' addresses after the apply.
func (w *world) ownAddresses() map[netip.Addr]ownAddress {
	out := map[netip.Addr]ownAddress{}
	for n, l := range w.leases {
		for _, a := range addrs(l.Addresses) {
			out[a] = ownAddress{node: n}
		}
	}
	cur := w.current()
	keys := make([]store.Key, 0, len(cur))
	for k, o := range cur {
		if o.Node != nil {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Name < keys[j].Name })
	for _, k := range keys {
		o := cur[k]
		for i, v := range o.Node.Spec.Addresses {
			ip, err := netip.ParseAddr(v)
			if err != nil {
				continue
			}
			own := ownAddress{node: k.Name}
			if w.stored[k] != o {
				own.declared, own.field = o, fmt.Sprintf("spec.addresses[%d]", i)
			}
			out[ip.Unmap()] = own
		}
	}
	return out
}

// checkOwnAddresses refuses a service on a node's own address: it would take over that node's
// ports (its sshd, its kubelet) for every client. Applying the service or the Node that makes
// the clash is refused; a node registering later is not an apply and cannot be.
func (w *world) checkOwnAddresses(own map[netip.Addr]ownAddress, set Settings) error {
	for _, o := range w.applied {
		if o.Service == nil {
			continue
		}
		for _, f := range serviceAddresses(&o.Service.Spec) {
			if n, ok := own[f.ip]; ok && !set.allowed(f.ip) {
				return o.fail(f.field, "%s is an address of node %s: the service would take over the node's own ports; an operator may allow a range with --allow-address-range", f.ip, n.node)
			}
		}
	}
	cur := w.current()
	for k, o := range w.stored {
		if o.Service == nil || cur[k] != o { // not a service, or replaced by the apply (checked above)
			continue
		}
		for _, f := range serviceAddresses(&o.Service.Spec) {
			if n, ok := own[f.ip]; ok && n.declared != nil && !set.allowed(f.ip) {
				return n.declared.fail(n.field, "%s is an address of %s (%s): the service would take over this node's own ports", f.ip, o, f.field)
			}
		}
	}
	return nil
}
