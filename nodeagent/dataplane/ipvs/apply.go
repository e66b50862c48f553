package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/knftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// ErrConflict means two ports claim the same virtual server.
var ErrConflict = errors.New("virtual server claimed by another port")

// feState is a frontend-map element as the kernel holds it: the map value, and the source ranges
// of its sr- chain ("?" when adopted from an earlier run and so unknown).
type feState struct {
	Value  string
	Ranges string
}

func wantFrontend(k vsKey, v verdict) feState {
	return feState{Value: "goto " + v.mapChain(k), Ranges: v.Ranges}
}

// Apply programs a change. Its cost follows the change, not the table: for each upserted port it
// compares the new plan with the last one and the kernel view and issues only the difference,
// with nftables in at most two transactions for the whole change and no dump at all.
func (d *Dataplane) Apply(ctx context.Context, c dataplane.Change) map[string]error {
	d.mu.Lock()
	defer d.mu.Unlock()
	errs := map[string]error{}
	fail := func(base string, err error) { errs[base] = fmt.Errorf("ipvs dataplane: %s: %w", base, err) }

	removing := map[string]bool{}
	for _, b := range c.Removals {
		removing[b] = true
	}
	plans := map[string]*portPlan{}
	claimed := map[vsKey]string{}
	var bases []string
	for _, p := range c.Upserts {
		pl, err := planPort(p, d.opts.Node, d.opts.Scheduler)
		if err == nil {
			err = d.checkClaims(p.Base, pl, claimed, removing)
		}
		if err != nil {
			fail(p.Base, err)
			continue
		}
		for k := range pl.Services {
			claimed[k] = p.Base
		}
		plans[p.Base] = pl
		bases = append(bases, p.Base)
	}
	sort.Strings(bases)

	// nftables first: a virtual server is only created once its frontend element marks it ours.
	for base, err := range d.runPerBase(ctx, bases, func(tx *knftables.Transaction, base string) {
		d.nftAdds(tx, plans[base])
	}) {
		fail(base, err)
		delete(plans, base)
	}
	for _, pl := range plans {
		// The elements are in the kernel now, whatever happens to the IPVS half.
		for k, v := range pl.Frontends {
			d.frontends[k] = wantFrontend(k, v)
		}
	}

	// Stage every port: changes to existing virtual servers run now, creations are queued and
	// sent in bulk, then each port that fully succeeded is committed.
	w := d.writer()
	var queued []queuedOp
	queuedAddrs := map[netip.Addr]bool{}
	var staged []string
	for _, base := range bases {
		pl, ok := plans[base]
		if !ok {
			continue
		}
		if err := d.stagePort(base, d.ports[base], pl, w, &queued, queuedAddrs); err != nil {
			fail(base, err)
			continue
		}
		staged = append(staged, base)
	}
	for i, err := range w.Flush() {
		if err == nil {
			continue
		}
		q := queued[i]
		if err := d.recoverQueued(q, err); err != nil && errs[q.base] == nil {
			fail(q.base, err)
		}
	}
	var cleanup []vsKey
	var gone []netip.Addr
	for _, base := range staged {
		if errs[base] != nil {
			continue
		}
		pl, old := plans[base], d.ports[base]
		if old != nil {
			for k := range old.Services {
				if _, keep := pl.Services[k]; !keep {
					cleanup = append(cleanup, k)
				}
			}
		}
		gone = append(gone, d.commit(base, old, pl)...)
	}
	for _, base := range c.Removals {
		if errs[base] != nil {
			continue
		}
		keys, addrs, err := d.removePort(base)
		cleanup = append(cleanup, keys...)
		gone = append(gone, addrs...)
		if err != nil {
			fail(base, err)
		}
	}
	if err := d.cleanupAfter(ctx, cleanup, gone); err != nil {
		// The ports are applied; what is left is garbage Prune or Reconcile collects.
		for _, b := range c.Removals {
			if errs[b] == nil {
				fail(b, err)
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// checkClaims refuses a plan whose virtual servers another live port owns.
func (d *Dataplane) checkClaims(base string, pl *portPlan, claimed map[vsKey]string, removing map[string]bool) error {
	for k := range pl.Services {
		if o, ok := claimed[k]; ok && o != base {
			return fmt.Errorf("%w: %s is also in %s", ErrConflict, k, o)
		}
		if o, ok := d.owner[k]; ok && o != base && !removing[o] {
			return fmt.Errorf("%w: %s belongs to %s", ErrConflict, k, o)
		}
	}
	return nil
}

// runPerBase runs one transaction with every base's operations; when it fails, it retries base by
// base so one bad port does not hold back the others. It returns the failures.
func (d *Dataplane) runPerBase(ctx context.Context, bases []string, add func(*knftables.Transaction, string)) map[string]error {
	tx := d.nft.NewTransaction()
	var touched []string
	for _, b := range bases {
		n := tx.NumOperations()
		add(tx, b)
		if tx.NumOperations() > n {
			touched = append(touched, b)
		}
	}
	if len(touched) == 0 {
		return nil
	}
	if err := d.nft.Run(ctx, tx); err == nil {
		return nil
	}
	failed := map[string]error{}
	for _, b := range touched {
		one := d.nft.NewTransaction()
		add(one, b)
		if err := d.nft.Run(ctx, one); err != nil {
			failed[b] = fmt.Errorf("nftables: %w", err)
		}
	}
	return failed
}

// nftAdds adds the frontend elements, service addresses and hairpin entries pl needs that the
// kernel does not hold yet.
func (d *Dataplane) nftAdds(tx *knftables.Transaction, pl *portPlan) {
	for _, k := range sortedKeys(pl.Frontends) {
		v := pl.Frontends[k]
		cur, ok := d.frontends[k]
		if ok && cur == wantFrontend(k, v) {
			continue
		}
		if ok && cur.Value != wantFrontend(k, v).Value {
			d.delFrontendElement(tx, k, cur)
		}
		addFrontend(tx, k, v)
	}
	for _, a := range pl.Addrs {
		if d.addrs[a] == 0 {
			tx.Add(addrElement("svc-addrs", a))
		}
	}
	for _, a := range d.localReals(pl) {
		if d.hairpin[a] == 0 {
			tx.Add(hairpinElement(a))
		}
	}
}

// localReals lists the distinct real-server addresses of pl inside this node's pod CIDRs: the
// ones a pod can reach through a service and land on itself (hairpin).
func (d *Dataplane) localReals(pl *portPlan) []netip.Addr {
	var out []netip.Addr
	if len(d.opts.Node.PodCIDRs) == 0 {
		return nil
	}
	for _, vs := range pl.Services {
		for rs := range vs.Reals {
			a := rs.Addr()
			if slices.Contains(out, a) {
				continue
			}
			for _, p := range d.opts.Node.PodCIDRs {
				if p.Contains(a) {
					out = append(out, a)
					break
				}
			}
		}
	}
	return out
}

// queuedOp remembers what a queued creation was for, to map its result back.
type queuedOp struct {
	base string
	key  vsKey
	rs   netip.AddrPort
	addr netip.Addr
	want *vsPlan
}

// stagePort brings IPVS and the dummy device from old to pl for one base: creations of whole
// virtual servers and addresses go to w, everything else runs now.
func (d *Dataplane) stagePort(base string, old, pl *portPlan, w bulkWriter, queued *[]queuedOp, queuedAddrs map[netip.Addr]bool) error {
	for _, a := range pl.Addrs {
		if d.addrs[a] == 0 && !queuedAddrs[a] {
			queuedAddrs[a] = true
			w.AddAddr(a)
			*queued = append(*queued, queuedOp{base: base, addr: a})
		}
	}
	for _, k := range sortedKeys(pl.Services) {
		want := pl.Services[k]
		if _, ok := d.kernel[k]; ok || !d.known {
			// Known to exist, or unknown: the one-at-a-time path compares and adopts.
			if err := d.syncVS(k, want); err != nil {
				return err
			}
			continue
		}
		kv := &kernelVS{Spec: want.Spec, Reals: map[netip.AddrPort]int{}}
		d.kernel[k] = kv
		w.NewService(k, want.Spec)
		*queued = append(*queued, queuedOp{base: base, key: k, want: want})
		for _, rs := range sortedAddrPorts(want.Reals) {
			w.NewDestination(k, rs, want.Reals[rs])
			kv.Reals[rs] = want.Reals[rs]
			*queued = append(*queued, queuedOp{base: base, key: k, rs: rs, want: want})
		}
	}
	if old != nil {
		for _, k := range sortedKeys(old.Services) {
			if _, keep := pl.Services[k]; !keep {
				if err := d.deleteVS(k); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// recoverQueued handles a queued creation that failed: it corrects the kernel view and, when the
// object turned out to exist already, adopts it instead of failing.
func (d *Dataplane) recoverQueued(q queuedOp, err error) error {
	switch {
	case q.addr.IsValid():
		return fmt.Errorf("adding %s to the device: %w", q.addr, err)
	case !q.rs.IsValid():
		delete(d.kernel, q.key)
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("creating %s: %w", q.key, err)
		}
		// Created behind our back since the last dump: adopt it and make it right.
		return d.syncVS(q.key, q.want)
	default:
		kv, ok := d.kernel[q.key]
		if !ok {
			return nil // its virtual server failed and was reported
		}
		if errors.Is(err, unix.EEXIST) {
			if uerr := d.ipvs.UpdateDestination(toService(q.key, kv.Spec), toDestination(q.rs, kv.Reals[q.rs])); uerr == nil {
				return nil
			}
		}
		delete(kv.Reals, q.rs)
		return fmt.Errorf("adding %s to %s: %w", q.rs, q.key, err)
	}
}

// writer returns the bulk writer: raw netlink sockets when available, else one-at-a-time.
func (d *Dataplane) writer() bulkWriter {
	if d.bulk != nil {
		return d.bulk
	}
	return &seqWriter{ipvs: d.ipvs, dev: d.dev}
}

// commit records a successfully applied plan and returns the dummy addresses it stopped using.
func (d *Dataplane) commit(base string, old, pl *portPlan) []netip.Addr {
	var gone []netip.Addr
	if old != nil {
		for k := range old.Services {
			if d.owner[k] == base {
				delete(d.owner, k)
			}
		}
		gone = d.release(old)
	}
	for k := range pl.Frontends {
		d.owner[k] = base
	}
	for _, a := range pl.Addrs {
		d.addrs[a]++
	}
	for _, a := range d.localReals(pl) {
		d.hairpin[a]++
	}
	d.ports[base] = pl
	return gone
}

// removePort deletes a base's virtual servers; it returns their keys and the dummy addresses no
// port uses any more, for cleanupAfter.
func (d *Dataplane) removePort(base string) ([]vsKey, []netip.Addr, error) {
	old, ok := d.ports[base]
	if !ok {
		return nil, nil, nil
	}
	var keys []vsKey
	for _, k := range sortedKeys(old.Services) {
		if d.owner[k] != base {
			continue
		}
		if err := d.deleteVS(k); err != nil {
			return keys, nil, err
		}
		keys = append(keys, k)
	}
	delete(d.ports, base)
	for _, k := range keys {
		delete(d.owner, k)
	}
	return keys, d.release(old), nil
}

// release drops a plan's references to dummy addresses and hairpin entries; it returns the
// addresses no port uses any more.
func (d *Dataplane) release(old *portPlan) []netip.Addr {
	var gone []netip.Addr
	for _, a := range old.Addrs {
		d.addrs[a]--
		if d.addrs[a] <= 0 {
			gone = append(gone, a)
		}
	}
	for _, a := range d.localReals(old) {
		d.unrefHairpin(a)
	}
	return gone
}

// cleanupAfter removes what deleted virtual servers left: their frontend elements, addresses
// nobody uses and hairpin entries of addresses no longer an endpoint here. It runs after the
// IPVS deletions, so a crash in between leaves a marker of ownership, never an unowned server.
func (d *Dataplane) cleanupAfter(ctx context.Context, keys []vsKey, addrs []netip.Addr) error {
	tx := d.nft.NewTransaction()
	for _, k := range keys {
		if _, owned := d.owner[k]; owned {
			continue
		}
		if cur, ok := d.frontends[k]; ok {
			d.delFrontendElement(tx, k, cur)
		}
	}
	var errs []error
	for _, a := range addrs {
		if d.addrs[a] > 0 {
			continue
		}
		delete(d.addrs, a)
		if err := d.dev.Del(a); err != nil {
			errs = append(errs, err)
		}
		tx.Add(addrElement("svc-addrs", a))
		tx.Delete(addrElement("svc-addrs", a))
	}
	for a := range d.hairpinGone {
		if d.hairpin[a] <= 0 {
			delete(d.hairpin, a)
			// Add then delete: removing an element that is not there must not fail the batch.
			tx.Add(hairpinElement(a))
			tx.Delete(hairpinElement(a))
		}
	}
	clear(d.hairpinGone)
	if tx.NumOperations() > 0 {
		if err := d.nft.Run(ctx, tx); err != nil {
			errs = append(errs, fmt.Errorf("nftables cleanup: %w", err))
		}
	}
	return errors.Join(errs...)
}

// unrefHairpin drops one use of a local endpoint address; cleanupAfter looks only at the ones
// that reached zero, so an apply never walks every local endpoint.
func (d *Dataplane) unrefHairpin(a netip.Addr) {
	d.hairpin[a]--
	if d.hairpin[a] <= 0 {
		d.hairpinGone[a] = true
	}
}

func (d *Dataplane) delFrontendElement(tx *knftables.Transaction, k vsKey, cur feState) {
	tx.Delete(&knftables.Element{Map: "fe" + famSuffix(k.Addr), Key: feElement(k, verdict{}).Key})
	if len(cur.Value) > len("goto sr-") && cur.Value[:len("goto sr-")] == "goto sr-" {
		tx.Delete(&knftables.Chain{Name: cur.Value[len("goto "):]})
	}
	delete(d.frontends, k)
}

// syncVS makes one virtual server match want, issuing only the operations that differ.
func (d *Dataplane) syncVS(k vsKey, want *vsPlan) error {
	kv, ok := d.kernel[k]
	if !ok {
		var err error
		if kv, err = d.createVS(k, want.Spec); err != nil {
			return err
		}
	} else if !sameSpec(kv.Spec, want.Spec) {
		if err := d.ipvs.UpdateService(toService(k, want.Spec)); err != nil {
			return fmt.Errorf("updating %s: %w", k, err)
		}
		kv.Spec = want.Spec
	}
	svc := toService(k, kv.Spec)
	for _, rs := range sortedAddrPorts(want.Reals) {
		w := want.Reals[rs]
		cur, has := kv.Reals[rs]
		switch {
		case !has:
			err := d.ipvs.NewDestination(svc, toDestination(rs, w))
			if errors.Is(err, unix.EEXIST) {
				err = d.ipvs.UpdateDestination(svc, toDestination(rs, w))
			}
			if err != nil {
				return fmt.Errorf("adding %s to %s: %w", rs, k, err)
			}
		case cur != w || d.isDraining(k, rs):
			if err := d.ipvs.UpdateDestination(svc, toDestination(rs, w)); err != nil {
				return fmt.Errorf("updating %s in %s: %w", rs, k, err)
			}
		}
		kv.Reals[rs] = w
		d.undrain(k, rs)
	}
	for _, rs := range sortedAddrPorts(kv.Reals) {
		if _, keep := want.Reals[rs]; !keep {
			if err := d.removeReal(k, kv, rs); err != nil {
				return err
			}
		}
	}
	return nil
}

// createVS adds a virtual server. When it exists already (the kernel view was unknown), it is
// adopted: its settings are rewritten and its real servers read, one dump of one server.
func (d *Dataplane) createVS(k vsKey, spec vsSpec) (*kernelVS, error) {
	svc := toService(k, spec)
	kv := &kernelVS{Spec: spec, Reals: map[netip.AddrPort]int{}}
	err := d.ipvs.NewService(svc)
	if errors.Is(err, unix.EEXIST) {
		if err := d.ipvs.UpdateService(svc); err != nil {
			return nil, fmt.Errorf("updating %s: %w", k, err)
		}
		dests, err := d.ipvs.GetDestinations(svc)
		if err != nil {
			return nil, fmt.Errorf("%w: listing real servers of %s: %w", ErrUnknownKernelState, k, err)
		}
		for _, dst := range dests {
			if rs, ok := fromDestination(dst); ok {
				kv.Reals[rs] = dst.Weight
			}
		}
	} else if err != nil {
		return nil, fmt.Errorf("creating %s: %w", k, err)
	}
	d.kernel[k] = kv
	return kv, nil
}

// deleteVS removes a virtual server with its real servers.
func (d *Dataplane) deleteVS(k vsKey) error {
	kv, ok := d.kernel[k]
	if !ok {
		return nil
	}
	err := d.ipvs.DelService(toService(k, kv.Spec))
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting %s: %w", k, err)
	}
	delete(d.kernel, k)
	delete(d.draining, k)
	if k.Proto == unix.IPPROTO_UDP {
		if err := d.ct.DeleteUDP(k, netip.AddrPort{}); err != nil {
			return err
		}
	}
	return nil
}

func sortedAddrPorts[V any](m map[netip.AddrPort]V) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

func sortedKeys[V any](m map[vsKey]V) []vsKey {
	out := make([]vsKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b vsKey) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return int(a.Proto) - int(b.Proto)
	})
	return out
}
