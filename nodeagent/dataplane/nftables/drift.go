package nftables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// Drift repair (Reconcile) must neither cost much when nothing drifted nor delay a change:
//
//   - nf_tables' ruleset generation moves on every committed transaction, anyone's. Each of our
//     commits reads it right after (under the apply lock); if it moved by exactly one, the commit
//     was the only one since the last, and the table still matches the view. A pass first reads
//     the generation: unchanged, and nothing else committed since we last knew the table matched,
//     means nothing drifted, for one netlink round trip.
//   - Otherwise the pass reads both tables back without the apply lock, then takes the lock only
//     to compare and repair. If a change committed meanwhile (the view's epoch moved), the dump
//     may predate it: the pass drops it and reads again. A read that differs from the view is
//     confirmed by a second read before anything is repaired (errUnconfirmed). While the pass
//     holds the lock, a change that arrives makes it give way (waiting): the comparison and the
//     planning stop, the lock goes to the change, and the pass starts over, at most passAttempts
//     times (then "deferred": the next pass checks again, the generation still unconfirmed).

// passAttempts bounds the reads of one pass that changes keep making stale.
const passAttempts = 4

// yieldEvery is how many ports or entries a pass handles under the lock between looks at
// whether a change waits for it.
const yieldEvery = 64

// lock takes the apply lock, counting the caller among those a drift-repair pass gives way to.
func (d *Dataplane) lock() {
	d.waiting.Add(1)
	d.mu.Lock()
	d.waiting.Add(-1)
}

// busy reports whether a caller waits for the apply lock: a pass holding it stops.
func (d *Dataplane) busy() bool { return d.waiting.Load() > 0 }

// noteGen reads the generation after a transaction of ours (accepted or refused): the tables
// stay known to match the view only if it moved by exactly our commit. Under d.mu.
func (d *Dataplane) noteGen(accepted bool) {
	g, err := d.k.generation()
	d.gens.Committed(accepted, g, err)
}

// Reconcile repairs whatever was changed in the tables from outside: chains or rules deleted or
// edited by hand, map elements removed or added, even a deleted table. When nothing was
// committed since our own last transaction, it costs one netlink round trip; otherwise it reads
// the tables back without holding up Apply (see the comment at the top of drift.go).
func (d *Dataplane) Reconcile(ctx context.Context) error {
	d.passMu.Lock()
	defer d.passMu.Unlock()
	start := time.Now()
	r := d.reconcile(ctx)
	d.metrics.Observe(time.Since(start), r.result, r.repairs, r.dumps > 0)
	if r.err != nil {
		return fmt.Errorf("nftables: reconcile: %w", r.err)
	}
	return nil
}

// ReconcileMetrics returns the backend's drift-repair metrics, for the agent's registry.
func (d *Dataplane) ReconcileMetrics() *dataplane.ReconcileMetrics { return d.metrics }

var _ dataplane.ReconcileReporter = (*Dataplane)(nil)

// passResult is what one pass did.
type passResult struct {
	result  string
	repairs int
	dumps   int
	err     error
}

func (d *Dataplane) reconcile(ctx context.Context) passResult {
	var r passResult
	confirm := false // a read found drift: repair only if the next one finds it too
	for range passAttempts {
		if err := ctx.Err(); err != nil {
			r.result, r.err = dataplane.ReconcileError, err
			return r
		}
		g, err := d.k.generation()
		if err != nil {
			r.result, r.err = dataplane.ReconcileError, err
			return r
		}
		d.mu.Lock()
		clean, epoch := d.gens.Clean(g), d.epoch
		if clean {
			d.lastMessages = 0
		}
		d.mu.Unlock()
		if clean {
			r.result = dataplane.ReconcileClean
			return r
		}
		r.dumps++
		dump, err := d.readTables()
		if err != nil {
			r.result, r.err = dataplane.ReconcileError, err
			return r
		}
		done, repairs, err := d.repairFrom(dump, epoch, confirm)
		if errors.Is(err, errUnconfirmed) {
			confirm = true
			continue
		}
		if err != nil {
			r.result, r.err = dataplane.ReconcileError, err
			return r
		}
		if done {
			r.result, r.repairs = dataplane.ReconcileClean, repairs
			if repairs > 0 {
				r.result = dataplane.ReconcileRepaired
			}
			return r
		}
	}
	r.result = dataplane.ReconcileDeferred
	return r
}

// tableDump is both families' tables as read back, and the generations before and after: equal,
// nothing committed during the reading, so it is one moment's state.
type tableDump struct {
	states     map[*family]*kernelState // nil state: the table is missing
	before, at uint32
}

func (dump *tableDump) consistent() bool { return dump.before == dump.at }

// readTables reads both families' tables, without the apply lock.
func (d *Dataplane) readTables() (*tableDump, error) {
	dump := &tableDump{states: map[*family]*kernelState{}}
	var err error
	if dump.before, err = d.k.generation(); err != nil {
		return nil, err
	}
	for _, f := range families {
		k, err := readState(d.k, f)
		if err != nil && !errors.Is(err, errNoTable) {
			return nil, fmt.Errorf("read %s table: %w", f.word, err)
		}
		dump.states[f] = k
	}
	if dump.at, err = d.k.generation(); err != nil {
		return nil, err
	}
	return dump, nil
}

// errUnconfirmed says a read differed from the view, and the pass reads again before it repairs:
// right after a large change the kernel is still resizing the sets' hash tables, and a dump then
// misses elements (measured: 16,604 of 155,973 elements in the first dump after applying 10,000
// services, none in the next), which would count as drift and be written again under the lock.
var errUnconfirmed = errors.New("drift seen once")

// repairFrom takes the apply lock and makes the tables what the view wants again, from a dump
// read at epoch. It returns done false, having changed nothing, when the dump is stale (a change
// committed since) or when a change waits for the lock; errUnconfirmed when the dump differs from
// the view but confirm is false.
func (d *Dataplane) repairFrom(dump *tableDump, epoch uint64, confirm bool) (done bool, repairs int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.epoch != epoch || d.busy() {
		return false, 0, nil
	}
	// What our last commit left, as far as this dump can tell: a commit of ours after it would
	// have moved the epoch. A repair's commit below then expects the generation after it.
	if dump.consistent() {
		d.gens.Matched(dump.at)
	} else {
		d.gens.Forget()
	}
	same, stopped := true, false
	for _, f := range families {
		if dump.states[f] == nil {
			same = false
			break
		}
		if same, stopped = sameState(d.tables[f].k, dump.states[f], d.busy); !same {
			break
		}
	}
	if stopped {
		d.gens.Forget()
		return false, 0, nil
	}
	if same {
		d.lastMessages = 0
		return true, 0, nil
	}
	if !confirm {
		d.gens.Forget() // the next attempt must read, whatever the generation
		return false, 0, errUnconfirmed
	}
	// Drift: the dump becomes the view (the kernel said so), and the plan puts back what the
	// applied ports and the skeleton want.
	d.epoch++
	plan := &Plan{}
	for _, f := range families {
		t, k := d.tables[f], dump.states[f]
		if k == nil {
			k = newKernelState()
		}
		t.adopt(k)
		pl := newPlanner(t)
		if !pl.repair(dump.states[f] == nil, d.busy) {
			d.gens.Forget() // the view is the dump; the repair waits for the next attempt
			return false, 0, nil
		}
		plan.fams = append(plan.fams, pl.finish())
	}
	if err := d.commit(plan); err != nil {
		d.gens.Forget()
		return false, 0, err
	}
	return true, plan.objects(), nil
}

// objects counts the kernel objects a plan writes: chains, rules, sets, and each element.
func (p *Plan) objects() int {
	n := 0
	for _, fp := range p.fams {
		for _, o := range fp.ops {
			if o.kind == opAddElems || o.kind == opDelElems {
				n += len(o.elems)
			} else {
				n++
			}
		}
	}
	return n
}

// sameState reports whether the view v and a dump k hold the same: if so, a repair plan would
// be empty, and no planning is needed. It stops, reporting stopped, as soon as stop says so.
func sameState(v, k *kernelState, stop func() bool) (same, stopped bool) {
	n := 0
	yield := func() bool {
		n++
		return n%yieldEvery == 0 && stop()
	}
	if len(v.chains) != len(k.chains) || len(v.ep) != len(k.ep) || len(v.data) != len(k.data) ||
		!maps.Equal(v.sets, k.sets) || !maps.Equal(v.ids, k.ids) || !maps.Equal(v.classes, k.classes) ||
		!sameTableSets(v.setNames, k.setNames) || !maps.Equal(v.vips, k.vips) ||
		!maps.Equal(v.nodeports, k.nodeports) || !maps.Equal(v.clusterIPs, k.clusterIPs) ||
		!maps.Equal(v.hairpin, k.hairpin) || !maps.Equal(v.npAddrs, k.npAddrs) {
		return false, false
	}
	for name, hs := range v.chains {
		if kh, ok := k.chains[name]; !ok || !slices.Equal(hs, kh) {
			return false, false
		}
		if yield() {
			return false, true
		}
	}
	for id, e := range v.data {
		ke, ok := k.data[id]
		if !ok || ke.set != e.set || !bytes.Equal(ke.key, e.key) || !bytes.Equal(ke.val, e.val) || ke.owner != e.owner {
			return false, false
		}
		if yield() {
			return false, true
		}
	}
	for id, es := range v.ep {
		if !sameElems(es, k.ep[id]) {
			return false, false
		}
		if yield() {
			return false, true
		}
	}
	return true, false
}

// sameTableSets compares the table-wide set names; the view names only the skeleton's there
// (ensureSkeleton), while class sets and per-port sets are compared as classes and sets.
func sameTableSets(v, k map[string]bool) bool {
	tableWide := func(name string) bool {
		_, isClass := parseClassSet(name)
		_, _, isPort := parseObjectName(name)
		return !isClass && !isPort
	}
	count := 0
	for name := range k {
		if tableWide(name) {
			if !v[name] {
				return false
			}
			count++
		}
	}
	for name := range v {
		if tableWide(name) {
			count--
		}
	}
	return count == 0
}

// sameElems compares endpoint map elements by key, end flag and data, in any order.
func sameElems(a, b []nftables.SetElement) bool {
	if len(a) != len(b) {
		return false
	}
	eq := func(x, y nftables.SetElement) bool {
		return x.IntervalEnd == y.IntervalEnd && bytes.Equal(x.Key, y.Key) && bytes.Equal(x.Val, y.Val)
	}
	if slices.EqualFunc(a, b, eq) {
		return true
	}
	type id struct {
		key, val string
		end      bool
	}
	count := map[id]int{}
	for _, e := range a {
		count[id{string(e.Key), string(e.Val), e.IntervalEnd}]++
	}
	for _, e := range b {
		k := id{string(e.Key), string(e.Val), e.IntervalEnd}
		if count[k] == 0 {
			return false
		}
		count[k]--
	}
	return true
}
