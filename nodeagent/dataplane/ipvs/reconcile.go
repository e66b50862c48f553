package ipvs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	mobyipvs "github.com/moby/ipvs"
)

// adopt learns what an earlier run left in the kernel, so the first Apply after a restart issues
// only the differences and established connections keep their real servers.
func (d *Dataplane) adopt() error {
	fes, err := d.nft.Frontends()
	if err != nil {
		return err
	}
	for k, chain := range fes {
		if st, ok := frontendFromKernel(k, chain); ok {
			d.frontends[k] = st
		}
	}
	hairpins, err := d.nft.Hairpins()
	if err != nil {
		return err
	}
	for _, a := range hairpins {
		// Present; it may serve a port not re-applied yet, so only Prune looks at it.
		d.hairpin[a] += 0
		d.hairpinAdopted[a] = true
	}
	addrs, err := d.dev.List()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		d.addrs[a] += 0 // present, used by nobody until a port claims it
	}
	// A failed dump leaves the view unknown; Apply then adopts servers one by one as it meets
	// them (opEnsureService) and Reconcile retries the dump.
	_ = d.refreshKernel()
	return nil
}

// owned says whether a virtual server is ours: its address is on our device or its key is in our
// frontend map.
func (d *Dataplane) owned(k vsKey) bool {
	if _, ok := d.frontends[k]; ok {
		return true
	}
	_, ok := d.addrs[k.Addr]
	return ok
}

// refreshKernel replaces the kernel view with a dump of the virtual servers we own. On any
// error the old view stays and known turns false.
func (d *Dataplane) refreshKernel() error {
	dump, err := readIPVS(d.ipvs, d.owned)
	if err != nil {
		d.known = false
		return err
	}
	d.adoptIPVS(dump)
	return nil
}

// ipvsDump is what IPVS holds for the virtual servers we own.
type ipvsDump map[vsKey]*ipvsDumpVS

type ipvsDumpVS struct {
	spec  vsSpec
	dests []*mobyipvs.Destination
}

// readIPVS lists the virtual servers owned says are ours, with their real servers. It reads
// only: Reconcile calls it without the lock, on a handle of its own.
func readIPVS(h ipvsHandle, owned func(vsKey) bool) (ipvsDump, error) {
	svcs, err := h.GetServices()
	if err != nil {
		return nil, fmt.Errorf("%w: listing virtual servers: %w", ErrUnknownKernelState, err)
	}
	dump := ipvsDump{}
	for _, s := range svcs {
		k, spec, ok := fromService(s)
		if !ok || !owned(k) {
			continue
		}
		dests, err := h.GetDestinations(s)
		if err != nil {
			return nil, fmt.Errorf("%w: listing real servers of %s: %w", ErrUnknownKernelState, k, err)
		}
		dump[k] = &ipvsDumpVS{spec: spec, dests: dests}
	}
	return dump, nil
}

// adoptIPVS makes a dump the kernel view: servers at weight 0 keep draining, servers gone
// behind our back become loose ends.
func (d *Dataplane) adoptIPVS(dump ipvsDump) {
	view := map[vsKey]*kernelVS{}
	for k, dv := range dump {
		kv := &kernelVS{Spec: dv.spec, Reals: map[netip.AddrPort]int{}}
		for _, dst := range dv.dests {
			if rs, ok := fromDestination(dst); ok {
				kv.Reals[rs] = dst.Weight
				if dst.Weight == 0 && !d.isDraining(k, rs) {
					// Weight 0 is only ever a draining server: keep draining it.
					d.drain(k, rs, d.now().Add(d.opts.DrainTimeout))
				}
			}
		}
		view[k] = kv
	}
	for k := range d.kernel {
		if _, ok := view[k]; !ok {
			d.loose.keys[k] = true // gone behind our back: its marks may go
		}
	}
	d.kernel = view
	d.known = true
}

// Prune removes every port keep does not hold and whatever an earlier run left that no port
// claims: virtual servers, frontend elements, device addresses.
func (d *Dataplane) Prune(ctx context.Context, keep map[string]bool) error {
	d.lock()
	defer d.mu.Unlock()
	d.complete = true
	var errs []error
	p := Plan{}
	for _, base := range slices.Sorted(maps.Keys(d.ports)) {
		if !keep[base] {
			if s, ok := planRemoval(base, &d.view, nil); ok {
				p.Steps = append(p.Steps, s)
			}
		}
	}
	errs = appendErrs(errs, d.commit(p))
	if !d.known {
		// Without a trustworthy dump, orphans stay: deleting on a partial view is the bug this
		// backend exists to avoid.
		errs = append(errs, d.refreshKernel())
	}
	if d.known {
		errs = appendErrs(errs, d.commit(Plan{Steps: []portStep{planOrphans(&d.view)}}))
		d.loosenUnclaimed()
	}
	for a := range d.hairpinAdopted {
		d.loose.hairpins[a] = true
	}
	clear(d.hairpinAdopted)
	errs = append(errs, d.commitTidy(planTidy(&d.view)))
	return errors.Join(errs...)
}

// loosenUnclaimed makes every frontend element no port claims and every address no port uses a
// loose end: the whole view is walked, which Prune and Reconcile may afford and Apply may not.
func (d *Dataplane) loosenUnclaimed() {
	for k := range d.frontends {
		if _, ok := d.owner[k]; !ok {
			d.loose.keys[k] = true
		}
	}
	for a, n := range d.addrs {
		if n <= 0 {
			d.loose.addrs[a] = true
		}
	}
}

func appendErrs(errs []error, m map[string]error) []error {
	for _, base := range slices.Sorted(maps.Keys(m)) {
		errs = append(errs, m[base])
	}
	return errs
}

// planRepair brings every owned virtual server back to its port's plan after a fresh dump.
func planRepair(v *view) Plan {
	var p Plan
	for _, base := range slices.Sorted(maps.Keys(v.ports)) {
		pl := v.ports[base]
		s := portStep{Base: base}
		for _, k := range sortedKeys(pl.Services) {
			if v.owner[k] != base {
				continue
			}
			if kv, ok := v.kernel[k]; ok {
				s.Now = append(s.Now, planVS(k, kv, pl.Services[k], v)...)
			} else {
				s.Now = append(s.Now, ipvsOp{Kind: opEnsureService, Key: k, Spec: pl.Services[k].Spec, Want: pl.Services[k]})
			}
		}
		p.Steps = append(p.Steps, s)
	}
	return p
}

// planFullNFT rewrites the whole table from the view, and returns the frontend elements the
// table then holds.
func planFullNFT(v *view, base []nftOp) ([]nftOp, map[vsKey]feState) {
	ops := append(slices.Clone(base), nftOp{Kind: nftFlush})
	fes := map[vsKey]feState{}
	for _, k := range sortedKeys(v.frontends) {
		if _, ok := v.owner[k]; ok {
			continue
		}
		// Unclaimed (an earlier run's, or pending removal): it keeps marking its server as ours
		// until Reconcile or Prune may remove both. Its source-range chain is added, not
		// rewritten: kept when present, and present for the element when the table was lost.
		st := v.frontends[k]
		if st.Verdict.Restricted {
			st.Unknown = true
		}
		ops = append(ops, nftOp{Kind: nftAddFrontend, Key: k, State: st})
		fes[k] = st
	}
	for _, base := range slices.Sorted(maps.Keys(v.ports)) {
		pl := v.ports[base]
		for _, k := range sortedKeys(pl.Frontends) {
			if v.owner[k] == base {
				st := feState{Verdict: pl.Frontends[k]}
				ops = append(ops, nftOp{Kind: nftAddFrontend, Key: k, State: st})
				fes[k] = st
			}
		}
	}
	for _, a := range sortedAddrs(v.addrs) {
		ops = append(ops, nftOp{Kind: nftAddAddr, Addr: a})
	}
	for _, a := range sortedAddrs(v.hairpin) {
		if v.hairpin[a] > 0 || v.hairpinAdopted[a] {
			ops = append(ops, nftOp{Kind: nftAddHairpin, Addr: a})
		}
	}
	return ops, fes
}

// repairAddrs puts back device addresses a port uses, and notes the ones present that no port
// uses, for Reconcile to remove when it may. It returns how many it put back.
func (d *Dataplane) repairAddrs() (int, error) {
	have, err := d.dev.List()
	if err != nil {
		return 0, err
	}
	present := map[netip.Addr]bool{}
	for _, a := range have {
		present[a] = true
		d.addrs[a] += 0
	}
	var errs []error
	n := 0
	for _, a := range sortedAddrs(d.addrs) {
		if d.addrs[a] > 0 && !present[a] {
			n++
			errs = append(errs, d.run(ipvsOp{Kind: opAddAddr, Addr: a}))
		}
	}
	return n, errors.Join(errs...)
}
