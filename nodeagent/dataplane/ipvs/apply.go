package ipvs

import (
	"context"
	"net/netip"
	"slices"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// Apply programs a change. Its cost follows the change, not the table: planApply compares each
// upserted port with its last applied state and the view, so only the difference is issued, with
// nftables in one transaction for the whole change (two with the tidy) and no dump at all.
//
// It runs in two plan-then-commit rounds, because what may be removed depends on what the kernel
// confirmed: first the ports, then the tidy of what they released.
func (d *Dataplane) Apply(ctx context.Context, c dataplane.Change) map[string]error {
	d.lock()
	defer d.mu.Unlock()
	plan := planApply(c, &d.view, d.opts.Node, d.opts.Scheduler)
	errs := d.commit(plan)
	d.lastPlan = plan // printed only when asked: formatting every apply would cost the apply path
	if err := d.commitTidy(planTidy(&d.view)); err != nil {
		// The ports are applied; what is left is garbage Prune or Reconcile collects.
		for _, b := range c.Removals {
			if errs[b] == nil {
				errs[b] = err
			}
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// Plan returns the plan Apply would commit for c now, for debugging: it changes nothing.
func (d *Dataplane) Plan(c dataplane.Change) Plan {
	d.mu.Lock()
	defer d.mu.Unlock()
	return planApply(c, &d.view, d.opts.Node, d.opts.Scheduler)
}

func sortedAddrPorts[V any](m map[netip.AddrPort]V) []netip.AddrPort {
	out := make([]netip.AddrPort, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b netip.AddrPort) int { return a.Compare(b) })
	return out
}

func sortedAddrs[V any](m map[netip.Addr]V) []netip.Addr {
	out := make([]netip.Addr, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
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

// LastPlan returns the plan the last Apply committed, one operation per line.
func (d *Dataplane) LastPlan() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastPlan.String()
}

var _ dataplane.PlanReporter = (*Dataplane)(nil)
