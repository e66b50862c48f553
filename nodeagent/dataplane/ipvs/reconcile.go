package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"sigs.k8s.io/knftables"
)

// adopt learns what an earlier run left in the kernel, so the first Apply after a restart issues
// only the differences and established connections keep their real servers.
func (d *Dataplane) adopt(ctx context.Context) error {
	fes, err := listFrontends(ctx, d.nft)
	if err != nil {
		return err
	}
	for k, v := range fes {
		st := feState{Value: v}
		if strings.HasPrefix(v, "goto sr-") {
			st.Ranges = "?" // the chain's ranges are not read back: the first Apply rewrites it
		}
		d.frontends[k] = st
	}
	for _, set := range []string{"hairpin4", "hairpin6"} {
		elems, err := d.nft.ListElements(ctx, "set", set)
		if err != nil && !knftables.IsNotFound(err) {
			return fmt.Errorf("listing %s: %w", set, err)
		}
		for _, e := range elems {
			if len(e.Key) != 2 {
				continue
			}
			if a, err := netip.ParseAddr(e.Key[0]); err == nil {
				// Present; it may serve a port not re-applied yet, so only Prune looks at it.
				d.hairpin[a] += 0
				d.hairpinAdopted[a] = true
			}
		}
	}
	addrs, err := d.dev.List()
	if err != nil {
		return err
	}
	for _, a := range addrs {
		d.addrs[a] += 0 // present, used by nobody until a port claims it
	}
	// A failed dump leaves the view unknown; Apply then adopts servers one by one as it meets
	// them (createVS) and Reconcile retries the dump.
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
	svcs, err := d.ipvs.GetServices()
	if err != nil {
		d.known = false
		return fmt.Errorf("%w: listing virtual servers: %w", ErrUnknownKernelState, err)
	}
	view := map[vsKey]*kernelVS{}
	for _, s := range svcs {
		k, spec, ok := fromService(s)
		if !ok || !d.owned(k) {
			continue
		}
		dests, err := d.ipvs.GetDestinations(s)
		if err != nil {
			d.known = false
			return fmt.Errorf("%w: listing real servers of %s: %w", ErrUnknownKernelState, k, err)
		}
		kv := &kernelVS{Spec: spec, Reals: map[netip.AddrPort]int{}}
		for _, dst := range dests {
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
	d.kernel = view
	d.known = true
	return nil
}

// Prune removes every port keep does not hold and whatever an earlier run left that no port
// claims: virtual servers, frontend elements, device addresses.
func (d *Dataplane) Prune(ctx context.Context, keep map[string]bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.complete = true
	var errs []error
	var keys []vsKey
	var gone []netip.Addr
	for _, base := range sortedBases(d.ports) {
		if keep[base] {
			continue
		}
		k, a, err := d.removePort(base)
		keys, gone = append(keys, k...), append(gone, a...)
		if err != nil {
			errs = append(errs, err)
		}
	}
	if !d.known {
		if err := d.refreshKernel(); err != nil {
			// Without a trustworthy dump, orphans stay: deleting on a partial view is the bug
			// this backend exists to avoid.
			errs = append(errs, err)
		}
	}
	if d.known {
		for _, k := range sortedKeys(d.kernel) {
			if _, ok := d.owner[k]; ok {
				continue
			}
			if err := d.deleteVS(k); err != nil {
				errs = append(errs, err)
				continue
			}
			keys = append(keys, k)
		}
	}
	if d.known {
		// Only once the orphaned servers are gone may the marks of ownership go: a server left
		// without them would be nobody's forever.
		for k := range d.frontends {
			if _, ok := d.owner[k]; !ok {
				keys = append(keys, k)
			}
		}
		for a, n := range d.addrs {
			if n <= 0 {
				gone = append(gone, a)
			}
		}
	}
	for a := range d.hairpinAdopted {
		d.hairpinGone[a] = true
	}
	clear(d.hairpinAdopted)
	if err := d.cleanupAfter(ctx, keys, gone); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Reconcile repairs drift: the device and its addresses, the nftables table (rewritten in one
// transaction from what was applied), and IPVS (compared with a fresh dump). Objects no port
// claims are removed only once Prune has declared the state complete and the dump succeeded;
// a failed dump repairs nothing in IPVS and returns ErrUnknownKernelState.
func (d *Dataplane) Reconcile(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	if err := d.dev.Ensure(); err != nil {
		return err
	}
	// Marks of ownership first, so a server created below is never unowned.
	if err := d.nft.Run(ctx, d.fullNFT()); err != nil {
		errs = append(errs, fmt.Errorf("nftables repair: %w", err))
	}
	if err := d.repairAddrs(); err != nil {
		errs = append(errs, err)
	}
	if err := d.refreshKernel(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, base := range sortedBases(d.ports) {
		for _, k := range sortedKeys(d.ports[base].Services) {
			if d.owner[k] != base {
				continue
			}
			if err := d.syncVS(k, d.ports[base].Services[k]); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if d.complete {
		// Before the first Prune, unclaimed servers may be an earlier run's that the agent has
		// not re-applied yet: deleting them would cut their connections.
		var keys []vsKey
		for _, k := range sortedKeys(d.kernel) {
			if _, ok := d.owner[k]; !ok {
				// On our address or in our map, but claimed by no port: added by hand.
				if err := d.deleteVS(k); err != nil {
					errs = append(errs, err)
				}
			}
		}
		for k := range d.frontends {
			if _, ok := d.owner[k]; !ok {
				keys = append(keys, k)
			}
		}
		var unused []netip.Addr
		for a, n := range d.addrs {
			if n <= 0 {
				unused = append(unused, a)
			}
		}
		if err := d.cleanupAfter(ctx, keys, unused); err != nil {
			errs = append(errs, err)
		}
	}
	if err := d.drainTick(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// repairAddrs puts back device addresses a port uses, and notes the ones present that no port
// uses, for Reconcile to remove when it may.
func (d *Dataplane) repairAddrs() error {
	have, err := d.dev.List()
	if err != nil {
		return err
	}
	present := map[netip.Addr]bool{}
	for _, a := range have {
		present[a] = true
		d.addrs[a] += 0
	}
	var errs []error
	for a, n := range d.addrs {
		if n > 0 && !present[a] {
			if err := d.dev.Add(a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// fullNFT is one transaction that rewrites the whole table from the applied state.
func (d *Dataplane) fullNFT() *knftables.Transaction {
	tx := d.nft.NewTransaction()
	baseObjects(tx, d.opts.MasqueradeMark)
	d.podCIDRs(tx)
	for _, s := range []string{"svc-addrs4", "svc-addrs6", "hairpin4", "hairpin6"} {
		tx.Flush(&knftables.Set{Name: s})
	}
	tx.Flush(&knftables.Map{Name: "fe4"})
	tx.Flush(&knftables.Map{Name: "fe6"})
	kept := map[vsKey]feState{}
	for k, cur := range d.frontends {
		if _, ok := d.owner[k]; ok {
			continue
		}
		// Unclaimed (an earlier run's, or pending removal): it keeps marking its server as ours
		// until Reconcile or Prune may remove both. Its sr- chain is added, not flushed: kept
		// when present, and present for the element to point at when the table was lost.
		if strings.HasPrefix(cur.Value, "goto sr-") {
			tx.Add(&knftables.Chain{Name: strings.TrimPrefix(cur.Value, "goto ")})
		}
		tx.Add(&knftables.Element{Map: "fe" + famSuffix(k.Addr), Key: feElement(k, verdict{}).Key, Value: []string{cur.Value}})
		kept[k] = cur
	}
	d.frontends = kept
	for _, base := range sortedBases(d.ports) {
		pl := d.ports[base]
		for _, k := range sortedKeys(pl.Frontends) {
			if d.owner[k] == base {
				addFrontend(tx, k, pl.Frontends[k])
				d.frontends[k] = wantFrontend(k, pl.Frontends[k])
			}
		}
	}
	for a := range d.addrs {
		tx.Add(addrElement("svc-addrs", a))
	}
	for a, n := range d.hairpin {
		if n > 0 || d.hairpinAdopted[a] {
			tx.Add(hairpinElement(a))
		}
	}
	return tx
}

func sortedBases(m map[string]*portPlan) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
