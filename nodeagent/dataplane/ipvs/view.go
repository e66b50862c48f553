package ipvs

import (
	"net/netip"
	"time"
)

// view is what the backend believes the kernel holds for the objects it owns, with the ports
// that put them there. Plans are computed from it and never change it; commit changes it only
// from what the kernel confirmed.
type view struct {
	// ports is what each base last applied successfully.
	ports map[string]*portPlan
	// owner names the base each virtual server belongs to.
	owner map[vsKey]string
	// kernel is what IPVS holds for the virtual servers we own; known is false until a dump
	// succeeded, and while it is false nothing is deleted on the strength of the view.
	kernel map[vsKey]*kernelVS
	known  bool
	// frontends are the frontend-map elements in the kernel, by key.
	frontends map[vsKey]feState
	// addrs counts the ports using each device address (0: present, used by none);
	// hairpin counts the uses of each local endpoint address.
	addrs   map[netip.Addr]int
	hairpin map[netip.Addr]int
	// hairpinAdopted are entries an earlier run left, looked at by the first Prune.
	hairpinAdopted map[netip.Addr]bool
	// loose are objects whose last user went, for the tidy plan to look at: an Apply's cost
	// follows the change, so tidying never walks the whole view.
	loose looseEnds
	// complete turns true at the first Prune: from then on the applied ports are the whole
	// desired state, and Reconcile may remove what none of them claims.
	complete bool
	// draining holds TCP real servers that left, with the time they must be gone by.
	draining map[vsKey]map[netip.AddrPort]time.Time
}

// kernelVS is one virtual server as we believe the kernel holds it.
type kernelVS struct {
	Spec  vsSpec
	Reals map[netip.AddrPort]int
}

// looseEnds are candidates for removal: frontend elements, device addresses, hairpin entries.
type looseEnds struct {
	keys     map[vsKey]bool
	addrs    map[netip.Addr]bool
	hairpins map[netip.Addr]bool
}

func newLooseEnds() looseEnds {
	return looseEnds{keys: map[vsKey]bool{}, addrs: map[netip.Addr]bool{}, hairpins: map[netip.Addr]bool{}}
}

func newView() view {
	return view{
		ports: map[string]*portPlan{}, owner: map[vsKey]string{}, kernel: map[vsKey]*kernelVS{},
		frontends: map[vsKey]feState{}, addrs: map[netip.Addr]int{}, hairpin: map[netip.Addr]int{},
		hairpinAdopted: map[netip.Addr]bool{}, loose: newLooseEnds(),
		draining: map[vsKey]map[netip.AddrPort]time.Time{},
	}
}

// record makes want the applied state of base, releasing what its old state used.
func (v *view) record(base string, want *portPlan, podCIDRs []netip.Prefix) {
	v.forget(base, podCIDRs)
	for k := range want.Frontends {
		v.owner[k] = base
		delete(v.loose.keys, k)
	}
	for _, a := range want.Addrs {
		v.addrs[a]++
	}
	for _, a := range localReals(want, podCIDRs) {
		v.hairpin[a]++
	}
	v.ports[base] = want
}

// forget drops base's applied state: its servers lose their owner, its addresses and hairpin
// entries one user, and whatever that leaves unused becomes loose.
func (v *view) forget(base string, podCIDRs []netip.Prefix) {
	old, ok := v.ports[base]
	if !ok {
		return
	}
	delete(v.ports, base)
	for k := range old.Frontends {
		if v.owner[k] == base {
			delete(v.owner, k)
			v.loose.keys[k] = true
		}
	}
	for _, a := range old.Addrs {
		if v.addrs[a]--; v.addrs[a] <= 0 {
			v.loose.addrs[a] = true
		}
	}
	for _, a := range localReals(old, podCIDRs) {
		if v.hairpin[a]--; v.hairpin[a] <= 0 {
			v.loose.hairpins[a] = true
		}
	}
}

// localReals lists the distinct real-server addresses of pl inside this node's pod CIDRs: the
// ones a pod can reach through a service and land on itself (hairpin).
func localReals(pl *portPlan, podCIDRs []netip.Prefix) []netip.Addr {
	if len(podCIDRs) == 0 {
		return nil
	}
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, k := range sortedKeys(pl.Services) {
		for _, rs := range sortedAddrPorts(pl.Services[k].Reals) {
			a := rs.Addr()
			if seen[a] {
				continue
			}
			seen[a] = true
			for _, p := range podCIDRs {
				if p.Contains(a) {
					out = append(out, a)
					break
				}
			}
		}
	}
	return out
}

// drain starts draining rs of k until deadline.
func (v *view) drain(k vsKey, rs netip.AddrPort, deadline time.Time) {
	m := v.draining[k]
	if m == nil {
		m = map[netip.AddrPort]time.Time{}
		v.draining[k] = m
	}
	m[rs] = deadline
}

func (v *view) isDraining(k vsKey, rs netip.AddrPort) bool {
	_, ok := v.draining[k][rs]
	return ok
}

func (v *view) undrain(k vsKey, rs netip.AddrPort) {
	if m := v.draining[k]; m != nil {
		delete(m, rs)
		if len(m) == 0 {
			delete(v.draining, k)
		}
	}
}
