package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftgen"
)

// Drift repair (Reconcile) neither rewrites what nobody touched nor holds up a change for long:
//
//   - The nftables table is rewritten from the view only when nf_tables' ruleset generation moved
//     by more than our own commits (each of ours reads it right after, nftCommit); a quiet node's
//     check is one netlink round trip.
//   - IPVS has no such counter: it is read on every pass, but without the lock, on a handle of its
//     own. The read is adopted only if no change touched IPVS meanwhile (the epoch did not move);
//     otherwise it is read again, at most passAttempts times ("deferred": the next pass tries).
//   - Each stage (device and nftables, device addresses, IPVS, the drain tick) takes the lock on
//     its own, so a change waits for one stage at most, never for the whole pass.

// passAttempts bounds the IPVS reads of one pass that changes keep making stale.
const passAttempts = 3

// lock takes the lock for a change, counted among the callers a pass comparing its read under
// the lock gives way to; a read of IPVS begun before it is stale.
func (d *Dataplane) lock() {
	d.waiting.Add(1)
	d.mu.Lock()
	d.waiting.Add(-1)
	d.epoch++
}

// busy reports whether a change waits for the lock.
func (d *Dataplane) busy() bool { return d.waiting.Load() > 0 }

// yieldEvery is how many virtual servers a pass compares under the lock between looks at
// whether a change waits for it.
const yieldEvery = 64

// nftCommit runs ops as one transaction and reads the generation right after: the table stays
// known to match the view only if the generation moved by exactly our commit. Under d.mu.
func (d *Dataplane) nftCommit(ops []nftOp) error {
	err := d.nft.Commit(ops)
	g, gerr := d.nft.Generation()
	d.gens.Committed(err == nil, g, gerr)
	return err
}

// ReconcileMetrics returns the backend's drift-repair metrics, for the agent's registry.
func (d *Dataplane) ReconcileMetrics() *dataplane.ReconcileMetrics { return d.metrics }

var _ dataplane.ReconcileReporter = (*Dataplane)(nil)

// pass is what one drift-repair pass found and did.
type pass struct {
	repairs  int
	dumped   bool // the nftables table was read back
	deferred bool
}

// Reconcile repairs drift: the device and its addresses, the nftables table (rewritten in one
// transaction from the view when someone else committed to nftables), and IPVS (compared with a
// fresh read). Objects no port claims are removed only once Prune has declared the state complete
// and the read succeeded; a failed read repairs nothing in IPVS and returns ErrUnknownKernelState.
func (d *Dataplane) Reconcile(ctx context.Context) error {
	d.passMu.Lock()
	defer d.passMu.Unlock()
	start := time.Now()
	var p pass
	err := d.reconcile(ctx, &p)
	result := dataplane.ReconcileClean
	switch {
	case err != nil:
		result = dataplane.ReconcileError
	case p.deferred:
		result = dataplane.ReconcileDeferred
	case p.repairs > 0:
		result = dataplane.ReconcileRepaired
	}
	d.metrics.Observe(time.Since(start), result, p.repairs, p.dumped)
	return err
}

func (d *Dataplane) reconcile(ctx context.Context, p *pass) error {
	var errs []error
	// Marks of ownership first, so a server created below is never unowned.
	errs = append(errs, d.stage(func() error { return d.repairMarks(p) }))
	errs = append(errs, d.stage(func() error {
		n, err := d.repairAddrs()
		p.repairs += n
		return err
	}))
	if err := ctx.Err(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	err := d.repairIPVS(p)
	if errors.Is(err, ErrUnknownKernelState) {
		return errors.Join(append(errs, err)...)
	}
	errs = append(errs, err, d.stage(d.drainTick))
	return errors.Join(errs...)
}

// stage runs fn under the lock.
func (d *Dataplane) stage(fn func() error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return fn()
}

// repairMarks ensures the device, and rewrites the nftables table from the view unless the
// generation shows that nobody but us committed since it last matched. Under d.mu.
func (d *Dataplane) repairMarks(p *pass) error {
	if err := d.dev.Ensure(); err != nil {
		return err
	}
	g, gerr := d.nft.Generation()
	if gerr == nil && d.gens.Clean(g) {
		return nil
	}
	p.dumped = true
	had, herr := d.nft.Frontends()
	ops, fes := planFullNFT(&d.view, d.baseOps())
	if err := d.nft.Commit(ops); err != nil {
		d.gens.Forget()
		return fmt.Errorf("nftables repair: %w", err)
	}
	// The table is the view now, if nobody committed between the two reads but us.
	if g2, err := d.nft.Generation(); gerr == nil && err == nil && g2 == nftgen.Next(g) {
		d.gens.Matched(g2)
	} else {
		d.gens.Forget()
	}
	d.frontends = fes
	if herr != nil {
		p.repairs += len(fes) // no table to read: every element came back
		return nil
	}
	for k := range fes {
		if _, ok := had[k]; !ok {
			p.repairs++
		}
	}
	for k := range had {
		if _, ok := fes[k]; !ok {
			p.repairs++
		}
	}
	return nil
}

// repairIPVS reads IPVS without the lock, then, under it, adopts the read and brings every owned
// virtual server back to its port's plan, and (once Prune declared the state complete) removes
// what no port claims.
func (d *Dataplane) repairIPVS(p *pass) error {
	for range passAttempts {
		d.mu.Lock()
		epoch := d.epoch
		owned := d.ownedSnapshot()
		d.mu.Unlock()
		dump, err := readIPVS(d.dumpIPVS, owned)
		d.mu.Lock()
		if d.epoch != epoch {
			d.mu.Unlock()
			continue
		}
		done, err := d.repairFromIPVS(dump, err, p)
		d.mu.Unlock()
		if done {
			return err
		}
	}
	p.deferred = true
	return nil
}

// ownedSnapshot copies what owned reads, for a read of IPVS without the lock. Under d.mu.
func (d *Dataplane) ownedSnapshot() func(vsKey) bool {
	keys := make(map[vsKey]bool, len(d.frontends))
	for k := range d.frontends {
		keys[k] = true
	}
	addrs := make(map[netip.Addr]bool, len(d.addrs))
	for a := range d.addrs {
		addrs[a] = true
	}
	return func(k vsKey) bool { return keys[k] || addrs[k.Addr] }
}

// repairFromIPVS is repairIPVS under the lock, with the read (or its error). It returns done
// false, having changed nothing, when a change waits for the lock. Under d.mu.
func (d *Dataplane) repairFromIPVS(dump ipvsDump, readErr error, p *pass) (done bool, err error) {
	if readErr != nil {
		d.known = false
		return true, readErr
	}
	var errs []error
	same, stopped := d.sameIPVS(dump)
	if stopped {
		return false, nil
	}
	if !same || !d.known {
		d.adoptIPVS(dump)
		repair := planRepair(&d.view)
		p.repairs += repair.ops()
		errs = appendErrs(errs, d.commit(repair))
	}
	if d.complete {
		// Before the first Prune, unclaimed servers may be an earlier run's that the agent has
		// not re-applied yet: deleting them would cut their connections.
		orphans := Plan{Steps: []portStep{planOrphans(&d.view)}}
		p.repairs += orphans.ops()
		errs = appendErrs(errs, d.commit(orphans))
		d.loosenUnclaimed()
		errs = append(errs, d.commitTidy(planTidy(&d.view)))
	}
	return true, errors.Join(errs...)
}

// sameIPVS reports whether a read holds exactly the kernel view: then adopting it and planning
// a repair would change nothing. It stops, reporting stopped, when a change waits. Under d.mu.
func (d *Dataplane) sameIPVS(dump ipvsDump) (same, stopped bool) {
	if len(dump) != len(d.kernel) {
		return false, false
	}
	n := 0
	for k, dv := range dump {
		if n++; n%yieldEvery == 0 && d.busy() {
			return false, true
		}
		kv, ok := d.kernel[k]
		if !ok || !sameSpec(kv.Spec, dv.spec) || len(kv.Reals) != len(dv.dests) {
			return false, false
		}
		for _, dst := range dv.dests {
			rs, ok := fromDestination(dst)
			if w, has := kv.Reals[rs]; !ok || !has || w != dst.Weight {
				return false, false
			}
		}
	}
	return true, false
}

// ops counts the IPVS operations of a plan's steps.
func (p Plan) ops() int {
	n := 0
	for _, s := range p.Steps {
		n += len(s.Now) + len(s.Create)
	}
	return n
}
