package baremetal

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/ganglion-proxy/ganglion/store"
)

// world is the store's objects with an apply's objects laid over them: what the store would hold
// if the apply went through. Conflicts and references are checked against it.
type world struct {
	stored  map[store.Key]*Object
	applied []*Object
	nodes   map[string]bool      // declared or registered
	leases  map[string]leaseInfo // registered by their agents
}

func newWorld(stored, applied []*Object, leases map[string]leaseInfo) *world {
	w := &world{stored: map[store.Key]*Object{}, applied: applied, nodes: map[string]bool{}, leases: leases}
	for n := range leases {
		w.nodes[n] = true // registered by its agent: as good as declared
	}
	for _, o := range stored {
		w.stored[o.Key] = o
		if o.Node != nil {
			w.nodes[o.Key.Name] = true
		}
	}
	for _, o := range applied {
		if o.Node != nil {
			w.nodes[o.Key.Name] = true
		}
	}
	return w
}

// check finds duplicates, references to unknown nodes, taken addresses and ports, services on
// nodes' own addresses and exec checks nodes would not run, and allocates what the applied
// services leave out.
func (w *world) check(set Settings) error {
	seen := map[store.Key]*Object{}
	for _, o := range w.applied {
		if first, dup := seen[o.Key]; dup {
			return o.fail("metadata.name", "also defined by %s: one apply may name an object once", first.Source)
		}
		seen[o.Key] = o
		if o.Service == nil {
			continue
		}
		for i, b := range o.Service.Spec.Backends {
			if b.Node != "" && !w.nodes[b.Node] {
				return o.fail(fmt.Sprintf("spec.backends[%d].node", i), "unknown node %q (apply the Node first, or in the same apply)", b.Node)
			}
		}
	}
	// Everything that keeps its place: stored services not replaced by this apply.
	taken := newClaims()
	for k, o := range w.stored {
		if o.Service != nil && seen[k] == nil {
			taken.add(o, nil)
		}
	}
	own := w.ownAddresses()
	for a := range own {
		taken.vips[a] = true // never allocated: a VIP there would take over the node's ports
	}
	for _, o := range w.applied {
		if o.Service == nil {
			continue
		}
		inherit(o.Service, w.stored[o.Key])
		if err := allocate(o, taken, set); err != nil {
			return err
		}
		if err := taken.add(o, o); err != nil {
			return err
		}
	}
	if err := w.checkOwnAddresses(own, set); err != nil {
		return err
	}
	return w.checkExec()
}

// current is every object the store would hold after the apply.
func (w *world) current() map[store.Key]*Object {
	out := make(map[store.Key]*Object, len(w.stored)+len(w.applied))
	for k, o := range w.stored {
		out[k] = o
	}
	for _, o := range w.applied {
		out[o.Key] = o
	}
	return out
}

// inherit keeps a re-applied service's allocations when the new document leaves them out, the
// way kubectl apply keeps a Service's clusterIP.
func inherit(s *Service, prev *Object) {
	// A service turning headless or ExternalName lets its VIP and node ports go.
	if prev == nil || prev.Service == nil || !s.Spec.Proxied() {
		return
	}
	p := prev.Service.Spec
	if len(s.Spec.VIPs) == 0 {
		s.Spec.VIPs = p.VIPs
	}
	if s.Spec.HealthCheckNodePort == 0 && s.Spec.Type == "LoadBalancer" && s.Spec.ExternalTrafficPolicy == "Local" {
		s.Spec.HealthCheckNodePort = p.HealthCheckNodePort
	}
	for i := range s.Spec.Ports {
		np := &s.Spec.Ports[i]
		if np.NodePort != 0 || !s.Spec.NeedsNodePorts() {
			continue
		}
		for _, old := range p.Ports {
			if old.Name == np.Name && old.Protocol == np.Protocol {
				np.NodePort = old.NodePort
			}
		}
	}
}

// claims indexes what services hold: address:port/protocol frontends and node ports.
type claims struct {
	frontends map[string]*Object
	nodePorts map[string]*Object
	vips      map[netip.Addr]bool
}

func newClaims() *claims {
	return &claims{frontends: map[string]*Object{}, nodePorts: map[string]*Object{}, vips: map[netip.Addr]bool{}}
}

// add records o's claims; when checking is set, a claim already held by another object is an
// error naming the field of checking.
func (c *claims) add(o, checking *Object) error {
	sp := &o.Service.Spec
	addrs := slices.Concat(sp.VIPs, sp.ExternalIPs, sp.LoadBalancerIPs)
	for i, p := range sp.Ports {
		proto := or(p.Protocol, "TCP")
		for _, a := range addrs {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				continue
			}
			k := netip.AddrPortFrom(ip.Unmap(), uint16(p.Port)).String() + "/" + proto
			if other := c.frontends[k]; other != nil && other != o && checking != nil {
				return checking.fail(fmt.Sprintf("spec.ports[%d]", i), "%s is already taken by %s", k, other)
			}
			c.frontends[k] = o
		}
		if p.NodePort != 0 {
			k := fmt.Sprintf("%d/%s", p.NodePort, proto)
			if other := c.nodePorts[k]; other != nil && other != o && checking != nil {
				return checking.fail(fmt.Sprintf("spec.ports[%d].nodePort", i), "%s is already taken by %s", k, other)
			}
			c.nodePorts[k] = o
		}
	}
	if hc := sp.HealthCheckNodePort; hc != 0 {
		k := fmt.Sprintf("%d/TCP", hc)
		if other := c.nodePorts[k]; other != nil && other != o && checking != nil {
			return checking.fail("spec.healthCheckNodePort", "%s is already taken by %s", k, other)
		}
		c.nodePorts[k] = o
	}
	for _, v := range sp.VIPs {
		if ip, err := netip.ParseAddr(v); err == nil {
			c.vips[ip.Unmap()] = true
		}
	}
	return nil
}

// allocate gives a service a VIP from the range and node ports from theirs where it has none.
func allocate(o *Object, c *claims, set Settings) error {
	sp := &o.Service.Spec
	if !sp.Proxied() {
		return nil
	}
	if len(sp.VIPs) == 0 {
		ip, ok := freeVIP(c, set.ServiceCIDR)
		if !ok {
			return o.fail("spec.vips", "none given and the service range %s is full", set.ServiceCIDR)
		}
		sp.VIPs = []string{ip.String()}
	}
	needs := sp.NeedsNodePorts()
	for i := range sp.Ports {
		if !needs || sp.Ports[i].NodePort != 0 {
			continue
		}
		p, ok := freeNodePort(c, set, or(sp.Ports[i].Protocol, "TCP"))
		if !ok {
			return o.fail(fmt.Sprintf("spec.ports[%d].nodePort", i), "none given and the node port range is full")
		}
		sp.Ports[i].NodePort = p
		c.nodePorts[fmt.Sprintf("%d/%s", p, or(sp.Ports[i].Protocol, "TCP"))] = o
	}
	if sp.Type == "LoadBalancer" && sp.ExternalTrafficPolicy == "Local" && sp.HealthCheckNodePort == 0 {
		p, ok := freeNodePort(c, set, "TCP")
		if !ok {
			return o.fail("spec.healthCheckNodePort", "none given and the node port range is full")
		}
		sp.HealthCheckNodePort = p
		c.nodePorts[fmt.Sprintf("%d/TCP", p)] = o
	}
	return nil
}

func freeVIP(c *claims, cidr netip.Prefix) (netip.Addr, bool) {
	// The first address is the network's; the second is left for a gateway, as Kubernetes
	// reserves it for the API server's own service.
	ip := cidr.Masked().Addr().Next().Next()
	for ; cidr.Contains(ip); ip = ip.Next() {
		if !c.vips[ip] {
			c.vips[ip] = true
			return ip, true
		}
	}
	return netip.Addr{}, false
}

func freeNodePort(c *claims, set Settings, proto string) (int32, bool) {
	for p := set.NodePortMin; p <= set.NodePortMax; p++ {
		if c.nodePorts[fmt.Sprintf("%d/%s", p, proto)] == nil && c.nodePorts[fmt.Sprintf("%d/TCP", p)] == nil {
			return p, true
		}
	}
	return 0, false
}
