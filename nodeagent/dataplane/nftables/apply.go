package nftables

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// Apply programs a change as one netlink transaction holding only the differences. If the kernel
// refuses it, each port is retried in its own transaction, so one bad port fails alone.
func (d *Dataplane) Apply(ctx context.Context, c dataplane.Change) map[string]error {
	d.lock()
	defer d.mu.Unlock()
	ups, removals, errs := d.render(c)
	err := d.commit(d.planChange(ups, removals))
	if err == nil || ctx.Err() != nil {
		if err != nil {
			for _, o := range ups {
				errs[o.base] = err
			}
		}
		return nilIfEmpty(errs)
	}
	// Find the culprits: one transaction per port.
	for _, o := range ups {
		if err := d.commit(d.planChange([]*portObjects{o}, nil)); err != nil {
			errs[o.base] = err
		}
	}
	for _, b := range removals {
		if err := d.commit(d.planChange(nil, []string{b})); err != nil {
			errs[b] = err
		}
	}
	return nilIfEmpty(errs)
}

// PlanChange returns the plan Apply would commit for c, without committing it, and the ports
// that cannot be rendered. It is for debugging: print the plan with its String method.
func (d *Dataplane) PlanChange(c dataplane.Change) (*Plan, map[string]error) {
	d.lock()
	defer d.mu.Unlock()
	ups, removals, errs := d.render(c)
	return d.planChange(ups, removals), nilIfEmpty(errs)
}

// render computes the objects of the change's upserts; removals are the bases the change
// removes and does not upsert again.
func (d *Dataplane) render(c dataplane.Change) (ups []*portObjects, removals []string, errs map[string]error) {
	errs = map[string]error{}
	upserted := map[string]bool{}
	for _, p := range c.Upserts {
		o, err := render(d.tableFor(p).cfg, p)
		if err != nil {
			errs[p.Base] = fmt.Errorf("nftables: %w", err)
			continue
		}
		ups = append(ups, o)
		upserted[p.Base] = true
	}
	for _, b := range c.Removals {
		if !upserted[b] {
			removals = append(removals, b)
		}
	}
	return ups, removals, errs
}

// planChange plans upserts and removals in one transaction over both families.
func (d *Dataplane) planChange(ups []*portObjects, removals []string) *Plan {
	pls := map[*family]*planner{}
	for _, f := range families {
		pls[f] = newPlanner(d.tables[f])
	}
	for _, o := range ups {
		pls[o.fam].upsert(o)
	}
	for _, b := range removals {
		for _, f := range families {
			pls[f].remove(b)
		}
	}
	plan := &Plan{}
	for _, f := range families {
		plan.fams = append(plan.fams, pls[f].finish())
	}
	return plan
}

func nilIfEmpty[K comparable, V any](m map[K]V) map[K]V {
	if len(m) == 0 {
		return nil
	}
	return m
}

func (d *Dataplane) tableFor(p dataplane.Port) *familyTable {
	if p.Service != nil {
		return d.tables[familyOf(p.Service.Family)]
	}
	return d.tables[familyV4]
}

// Prune removes ports keep does not hold, and shared elements no kept port references.
func (d *Dataplane) Prune(_ context.Context, keep map[string]bool) error {
	d.lock()
	defer d.mu.Unlock()
	plan := &Plan{}
	for _, f := range families {
		pl := newPlanner(d.tables[f])
		for _, base := range slices.Sorted(maps.Keys(d.tables[f].ports)) {
			if !keep[base] {
				pl.remove(base)
			}
		}
		pl.gcClasses()
		for a := range pl.v.addrs(setClusterIPs).all() {
			pl.ips[a] = true
		}
		for a := range pl.v.addrs(setHairpin).all() {
			pl.pairs[a] = true
		}
		plan.fams = append(plan.fams, pl.finish())
	}
	if err := d.commit(plan); err != nil {
		return fmt.Errorf("nftables: prune: %w", err)
	}
	return nil
}

// commit sends a plan as one transaction. Only once the kernel accepted it does the view become
// what the plan left; a refused plan leaves the view as it was.
func (d *Dataplane) commit(p *Plan) error {
	d.lastMessages = 0
	if !p.empty() {
		if err := d.k.commit(p); err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				// Acknowledgements were lost: the kernel may have committed. Believe a dump instead.
				if rerr := d.resync(); rerr != nil {
					return errors.Join(err, rerr)
				}
				return err
			}
			d.noteGen(false)
			return err
		}
		d.noteGen(true)
		if d.watch != nil {
			d.watch.record(p)
		}
		d.lastMessages = p.messages()
		// Printed only when asked: formatting every commit would cost the apply path. Only a
		// bounded part of a large plan is kept (Plan.kept).
		d.lastPlan = p.kept()
	}
	var jobs []conntrackJob
	for _, fp := range p.fams {
		fp.next.apply()
		jobs = append(jobs, fp.cleanups...)
	}
	if len(jobs) > 0 {
		if err := d.k.forget(jobs); err != nil {
			d.opts.log.Warn("nftables: UDP conntrack cleanup failed", "error", err)
		}
	}
	return nil
}

// LastPlan returns the last plan the kernel accepted, in nft syntax.
func (d *Dataplane) LastPlan() string {
	d.lock()
	defer d.mu.Unlock()
	if d.lastPlan == nil {
		return ""
	}
	return d.lastPlan.String()
}

var _ dataplane.PlanReporter = (*Dataplane)(nil)
