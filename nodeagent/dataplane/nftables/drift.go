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
//   - Otherwise the pass reads both tables back without the apply lock (10,000 services: about
//     2.5 s), watching our commits meanwhile (watch.go): what they touched is taken from the
//     view, and a set whose elements they changed is skipped by the comparison (a hash set's
//     dump is torn by changes to it) and verified by a later pass. Only if the view was replaced
//     (epoch) is the read dropped. A read that differs from the view is confirmed by a second
//     read before anything is repaired (errUnconfirmed). The pass takes the lock only to compare
//     and repair; a change that arrives makes it give way (waiting): the comparison starts over
//     (at most maxYields times), the planning gives up until the pass's last attempt, at most
//     passAttempts reads (then "deferred": the next pass checks again).

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
	for attempt := range passAttempts {
		if err := ctx.Err(); err != nil {
			r.result, r.err = dataplane.ReconcileError, err
			return r
		}
		w, epoch, clean, err := d.startWatch()
		if err != nil {
			r.result, r.err = dataplane.ReconcileError, err
			return r
		}
		if clean {
			r.result = dataplane.ReconcileClean
			return r
		}
		r.dumps++
		dump, err := d.readTables()
		if errors.Is(err, errInterrupted) {
			d.stopWatch()
			continue // a commit tore a dump of rules: read again
		}
		if err != nil {
			d.stopWatch()
			r.result, r.err = dataplane.ReconcileError, err
			return r
		}
		done, repairs, err := d.repairFrom(dump, w, epoch, confirm, attempt == passAttempts-1)
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

// startWatch reads the generation: if nobody else committed since the tables last matched the
// view, the pass is over (clean). Otherwise it starts watching our commits, from the generation
// read under the lock, for a read of the tables without it.
func (d *Dataplane) startWatch() (w *watch, epoch uint64, clean bool, err error) {
	g, err := d.k.generation()
	if err != nil {
		return nil, 0, false, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gens.Clean(g) {
		d.lastMessages = 0
		return nil, 0, true, nil
	}
	if g, err = d.k.generation(); err != nil {
		return nil, 0, false, err
	}
	d.watch = newWatch(g)
	return d.watch, d.epoch, false, nil
}

func (d *Dataplane) stopWatch() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.watch = nil
}

// readTables reads both families' tables, without the apply lock; a missing table reads nil.
func (d *Dataplane) readTables() (map[*family]*kernelState, error) {
	dump := map[*family]*kernelState{}
	for _, f := range families {
		k, err := readState(d.k, f)
		if err != nil && !errors.Is(err, errNoTable) {
			return nil, fmt.Errorf("read %s table: %w", f.word, err)
		}
		dump[f] = k
	}
	return dump, nil
}

// errUnconfirmed says a read differed from the view, and the pass reads again before it repairs:
// right after a large change the kernel is still resizing the sets' hash tables, and a dump then
// misses elements (measured: 16,604 of 155,973 elements in the first dump after applying 10,000
// services, none in the next), which would count as drift and be written again under the lock.
var errUnconfirmed = errors.New("drift seen once")

// maxYields bounds how often one comparison under the lock starts over for waiting changes.
const maxYields = 3

// repairFrom takes the apply lock and makes the tables what the view wants again, from a dump
// read while w watched. What our commits touched meanwhile is taken from the view (watch.go).
// While it compares or plans, a change that waits for the lock goes first: the comparison
// starts over (at most maxYields times), the planning gives up (done false) unless last says
// this is the pass's last attempt. It returns done false, having changed nothing, also when
// the view was replaced since the read began (epoch); errUnconfirmed when the dump differs from
// the view but confirm is false.
func (d *Dataplane) repairFrom(dump map[*family]*kernelState, w *watch, epoch uint64, confirm, last bool) (done bool, repairs int, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	defer func() { d.watch = nil }()
	var g uint32
	quiet := false // nobody but us committed since the watch began, and no set was taken from the view
	for yields := 0; ; yields++ {
		if d.epoch != epoch {
			return false, 0, nil
		}
		var gerr error
		g, gerr = d.k.generation()
		quiet = gerr == nil && w.onlyOurs(g)
		skips := map[*family]*skip{}
		for _, f := range families {
			sets := w.touchedSets(f)
			quiet = quiet && len(sets) == 0 // a set taken from the view is not verified
			skips[f] = newSkip(sets)
			if dump[f] != nil {
				patch(dump[f], d.tables[f].k, w.touched(f), sets, false)
			}
		}
		stop := d.busy
		if yields >= maxYields || last {
			stop = func() bool { return false }
		}
		same, stopped := d.sameAsView(dump, skips, stop)
		if stopped {
			d.giveWay()
			continue
		}
		if same && !d.unrepaired {
			if quiet {
				d.gens.Matched(g)
			} else {
				d.gens.Forget()
			}
			d.lastMessages = 0
			return true, 0, nil
		}
		break
	}
	d.gens.Forget()
	if !confirm && !d.unrepaired {
		return false, 0, errUnconfirmed // the next attempt must read, whatever the generation
	}
	for _, f := range families {
		if dump[f] != nil {
			patch(dump[f], d.tables[f].k, w.touched(f), w.touchedSets(f), true)
		}
	}
	return d.repairDrift(dump, g, quiet, last)
}

// sameAsView compares both families' dumps with the view, but for the sets skips names; a
// missing table is drift.
func (d *Dataplane) sameAsView(dump map[*family]*kernelState, skips map[*family]*skip, stop func() bool) (same, stopped bool) {
	for _, f := range families {
		if dump[f] == nil {
			return false, false
		}
		if same, stopped = sameState(d.tables[f].k, dump[f], skips[f], stop); !same {
			return false, stopped
		}
	}
	return true, false
}

// giveWay lets the changes waiting for the lock have it, for up to 100 ms. Under d.mu.
func (d *Dataplane) giveWay() {
	d.mu.Unlock()
	defer d.mu.Lock()
	for deadline := time.Now().Add(100 * time.Millisecond); d.busy() && time.Now().Before(deadline); {
		time.Sleep(50 * time.Microsecond)
	}
}

// repairDrift makes the (patched) dump the view, since the kernel holds it, and commits what
// puts back what the applied ports and the skeleton want. g is the generation the dump matches
// if quiet. Under d.mu.
func (d *Dataplane) repairDrift(dump map[*family]*kernelState, g uint32, quiet, last bool) (done bool, repairs int, err error) {
	d.epoch++
	d.unrepaired = true // until the plan below is committed, the view is not what is wanted
	stop := d.busy
	if last {
		stop = nil
	}
	plan := &Plan{}
	for _, f := range families {
		t, k := d.tables[f], dump[f]
		if k == nil {
			k = newKernelState()
		}
		t.adopt(k)
		pl := newPlanner(t)
		if !pl.repair(dump[f] == nil, stop) {
			return false, 0, nil // the view is the kernel's; the repair waits for the next attempt
		}
		plan.fams = append(plan.fams, pl.finish())
	}
	if quiet {
		d.gens.Matched(g) // the repair's commit then moves it by one
	}
	if err := d.commit(plan); err != nil {
		d.gens.Forget()
		return false, 0, err
	}
	d.unrepaired = false
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

// sameState reports whether the view v and a dump k hold the same, but for the element sets sk
// names (nil: none): if so, a repair plan would be empty, and no planning is needed. It stops,
// reporting stopped, as soon as stop says so.
func sameState(v, k *kernelState, sk *skip, stop func() bool) (same, stopped bool) {
	n := 0
	yield := func() bool {
		n++
		return n%yieldEvery == 0 && stop()
	}
	if len(v.chains) != len(k.chains) ||
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
	dataSkipped := func(id dataID, _ dataVal) bool { return sk.set(id.set.name()) }
	if counted(sk, v.data, dataSkipped) != counted(sk, k.data, dataSkipped) {
		return false, false
	}
	for id, e := range v.data {
		if sk.set(id.set.name()) {
			continue
		}
		if ke, ok := k.data[id]; !ok || ke != e {
			return false, false
		}
		if yield() {
			return false, true
		}
	}
	epSkipped := func(id uint32, _ []nftables.SetElement) bool { return sk.bucket(id) }
	if counted(sk, v.ep, epSkipped) != counted(sk, k.ep, epSkipped) {
		return false, false
	}
	for id, es := range v.ep {
		if sk.bucket(id) {
			continue
		}
		if !sameElems(es, k.ep[id]) {
			return false, false
		}
		if yield() {
			return false, true
		}
	}
	return true, false
}

// counted is how many entries of m skipped does not pass over; all when sk skips nothing.
func counted[K comparable, V any](sk *skip, m map[K]V, skipped func(K, V) bool) int {
	n := len(m)
	if sk == nil || len(sk.sets) == 0 {
		return n
	}
	for k, v := range m {
		if skipped(k, v) {
			n--
		}
	}
	return n
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
