package ipvs

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// ErrConflict means two ports claim the same virtual server.
var ErrConflict = errors.New("virtual server claimed by another port")

// planApply is the plan of a change: each upserted port compared with its last applied state and
// the view, then each removed port. It is pure: the view is only read.
func planApply(c dataplane.Change, v *view, node dataplane.Node, sched string) Plan {
	p := Plan{Refused: map[string]error{}}
	removing := map[string]bool{}
	for _, b := range c.Removals {
		removing[b] = true
	}
	claimed := map[vsKey]string{}
	wants := map[string]*portPlan{}
	for _, port := range c.Upserts {
		pl, err := planPort(port, node, sched)
		if err == nil {
			err = checkClaims(port.Base, pl, claimed, removing, v.owner)
		}
		if err != nil {
			p.Refused[port.Base] = fmt.Errorf("ipvs dataplane: %s: %w", port.Base, err)
			continue
		}
		for k := range pl.Services {
			claimed[k] = port.Base
		}
		wants[port.Base] = pl
	}
	queued := map[netip.Addr]bool{}
	for _, base := range slices.Sorted(maps.Keys(wants)) {
		p.Steps = append(p.Steps, planUpsert(base, wants[base], v, node.PodCIDRs, queued))
	}
	for _, base := range c.Removals {
		if s, ok := planRemoval(base, v, claimed); ok {
			p.Steps = append(p.Steps, s)
		}
	}
	return p
}

// checkClaims refuses a port whose virtual servers another live port owns.
func checkClaims(base string, pl *portPlan, claimed map[vsKey]string, removing map[string]bool, owner map[vsKey]string) error {
	for _, k := range sortedKeys(pl.Services) {
		if o, ok := claimed[k]; ok && o != base {
			return fmt.Errorf("%w: %s is also in %s", ErrConflict, k, o)
		}
		if o, ok := owner[k]; ok && o != base && !removing[o] {
			return fmt.Errorf("%w: %s belongs to %s", ErrConflict, k, o)
		}
	}
	return nil
}

// planUpsert brings one port from its applied state to want. queued holds the device addresses
// earlier ports of the change already add.
func planUpsert(base string, want *portPlan, v *view, podCIDRs []netip.Prefix, queued map[netip.Addr]bool) portStep {
	s := portStep{Base: base, Want: want, NFT: frontendOps(want, v)}
	for _, a := range want.Addrs {
		users, onDevice := v.addrs[a]
		if users > 0 {
			continue
		}
		// Unused: the set element may be missing (a restart does not read the set back).
		s.NFT = append(s.NFT, nftOp{Kind: nftAddAddr, Addr: a})
		if !onDevice && !queued[a] {
			queued[a] = true
			s.Create = append(s.Create, ipvsOp{Kind: opAddAddr, Addr: a})
		}
	}
	for _, a := range localReals(want, podCIDRs) {
		if v.hairpin[a] == 0 {
			s.NFT = append(s.NFT, nftOp{Kind: nftAddHairpin, Addr: a})
		}
	}
	for _, k := range sortedKeys(want.Services) {
		w := want.Services[k]
		switch kv, ok := v.kernel[k]; {
		case ok:
			s.Now = append(s.Now, planVS(k, kv, w, v)...)
		case !v.known:
			// Absent from a view that is not known: it may exist, so create or adopt it.
			s.Now = append(s.Now, ipvsOp{Kind: opEnsureService, Key: k, Spec: w.Spec, Want: w})
		default:
			s.Create = append(s.Create, createOps(k, w)...)
		}
	}
	if old := v.ports[base]; old != nil {
		for _, k := range sortedKeys(old.Services) {
			if _, keep := want.Services[k]; !keep {
				if _, ok := v.kernel[k]; ok {
					s.Now = append(s.Now, ipvsOp{Kind: opDelService, Key: k})
				}
			}
		}
	}
	return s
}

// frontendOps writes the frontend elements want needs that the kernel does not hold as wanted.
// An element that jumps elsewhere is deleted first: the kernel does not overwrite an element.
func frontendOps(want *portPlan, v *view) []nftOp {
	var ops []nftOp
	for _, k := range sortedKeys(want.Frontends) {
		st := feState{Verdict: want.Frontends[k]}
		cur, ok := v.frontends[k]
		if ok && cur == st {
			continue
		}
		if ok && cur.target(k) != st.target(k) {
			ops = append(ops, nftOp{Kind: nftDelFrontend, Key: k, State: cur})
		}
		ops = append(ops, nftOp{Kind: nftAddFrontend, Key: k, State: st})
	}
	return ops
}

// createOps creates a virtual server and its real servers.
func createOps(k vsKey, w *vsPlan) []ipvsOp {
	ops := []ipvsOp{{Kind: opNewService, Key: k, Spec: w.Spec, Want: w}}
	for _, rs := range sortedAddrPorts(w.Reals) {
		ops = append(ops, ipvsOp{Kind: opNewDest, Key: k, Spec: w.Spec, Real: rs, Weight: w.Reals[rs]})
	}
	return ops
}

// planVS brings one virtual server the kernel holds as cur to want, issuing only what differs.
func planVS(k vsKey, cur *kernelVS, want *vsPlan, v *view) []ipvsOp {
	var ops []ipvsOp
	if !sameSpec(cur.Spec, want.Spec) {
		ops = append(ops, ipvsOp{Kind: opUpdateService, Key: k, Spec: want.Spec})
	}
	for _, rs := range sortedAddrPorts(want.Reals) {
		w := want.Reals[rs]
		switch have, ok := cur.Reals[rs]; {
		case !ok:
			ops = append(ops, ipvsOp{Kind: opNewDest, Key: k, Spec: want.Spec, Real: rs, Weight: w})
		case have != w || v.isDraining(k, rs):
			ops = append(ops, ipvsOp{Kind: opUpdateDest, Key: k, Spec: want.Spec, Real: rs, Weight: w})
		}
	}
	for _, rs := range sortedAddrPorts(cur.Reals) {
		if _, keep := want.Reals[rs]; keep {
			continue
		}
		switch {
		case k.Proto == unix.IPPROTO_UDP:
			ops = append(ops, ipvsOp{Kind: opDelDest, Key: k, Spec: want.Spec, Real: rs})
		case !v.isDraining(k, rs):
			ops = append(ops, ipvsOp{Kind: opDrainDest, Key: k, Spec: want.Spec, Real: rs})
		}
	}
	return ops
}

// planRemoval deletes the virtual servers a removed port owns, except those an upsert of the
// same change claims.
func planRemoval(base string, v *view, claimed map[vsKey]string) (portStep, bool) {
	old, ok := v.ports[base]
	if !ok {
		return portStep{}, false
	}
	s := portStep{Base: base, Remove: true}
	for _, k := range sortedKeys(old.Services) {
		if _, taken := claimed[k]; taken || v.owner[k] != base {
			continue
		}
		if _, ok := v.kernel[k]; ok {
			s.Now = append(s.Now, ipvsOp{Kind: opDelService, Key: k})
		}
	}
	return s, true
}

// planOrphans deletes the virtual servers the view holds that no port owns. The view must be
// known: an unknown view would delete on a guess.
func planOrphans(v *view) portStep {
	s := portStep{Base: "orphans"}
	for _, k := range sortedKeys(v.kernel) {
		if _, ok := v.owner[k]; !ok {
			s.Now = append(s.Now, ipvsOp{Kind: opDelService, Key: k})
		}
	}
	return s
}

// planTidy removes what the loose ends left: a frontend element once its virtual server is
// known gone and no port claims it, an address no port uses, a hairpin entry of an address no
// longer a local endpoint. Marks of ownership stay while the view is unknown.
func planTidy(v *view) tidyPlan {
	t := tidyPlan{Settled: newLooseEnds()}
	for _, k := range sortedKeys(v.loose.keys) {
		_, owned := v.owner[k]
		_, exists := v.kernel[k]
		switch {
		case owned:
			t.Settled.keys[k] = true
		case !v.known || exists:
		default:
			if st, ok := v.frontends[k]; ok {
				t.NFT = append(t.NFT, nftOp{Kind: nftDelFrontend, Key: k, State: st})
			}
			t.Settled.keys[k] = true
		}
	}
	for _, a := range sortedAddrs(v.loose.addrs) {
		switch {
		case v.addrs[a] > 0:
			t.Settled.addrs[a] = true
		case v.known:
			t.NFT = append(t.NFT, nftOp{Kind: nftDelAddr, Addr: a})
			t.DelAddrs = append(t.DelAddrs, a)
			t.Settled.addrs[a] = true
		}
	}
	for _, a := range sortedAddrs(v.loose.hairpins) {
		if v.hairpin[a] <= 0 {
			t.NFT = append(t.NFT, nftOp{Kind: nftDelHairpin, Addr: a})
		}
		t.Settled.hairpins[a] = true
	}
	return t
}
