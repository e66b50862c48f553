package nftables

import (
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// Phases order one transaction: make before break. Chains and sets exist before rules refer to
// them; map elements change after the chains they point to are ready; chains go last, once
// nothing refers to them.
const (
	phaseCreate = iota
	phaseRules
	phaseElemDel
	phaseElemAdd
	phaseFlushOld
	phaseDelete
	numPhases
)

// planner plans one transaction for one family. It reads the view and records its changes in
// its own overlay (v), never in the view, so a plan the kernel refuses is simply dropped.
type planner struct {
	t      *familyTable
	v      *planned
	phases [numPhases][]op
	// elems collects element changes per set and phase, sent as a few large messages. They
	// are kept in chunks of elemChunk until finish joins them: a full sync's hundred thousand
	// elements grown by append would leave four times their size behind as garbage.
	elems map[elemBatchKey][][]nftables.SetElement
	ips   map[netip.Addr]bool // ClusterIPs whose reference count changed
	pairs map[netip.Addr]bool // endpoints whose reference count changed
	// servicesDirty means the classes changed: the services chain is rewritten at finish.
	servicesDirty bool
	cleanups      []conntrackJob
}

type elemBatchKey struct {
	set   string
	phase int
}

func newPlanner(t *familyTable) *planner {
	return &planner{t: t, v: t.plan(), elems: map[elemBatchKey][][]nftables.SetElement{},
		ips: map[netip.Addr]bool{}, pairs: map[netip.Addr]bool{}}
}

func (pl *planner) at(phase int, o op) { pl.phases[phase] = append(pl.phases[phase], o) }

func (pl *planner) elem(set string, phase int, e nftables.SetElement) {
	k := elemBatchKey{set, phase}
	chunks := pl.elems[k]
	if n := len(chunks); n == 0 || len(chunks[n-1]) == cap(chunks[n-1]) {
		chunks = append(chunks, make([]nftables.SetElement, 0, min(elemChunk, 8<<min(len(chunks), 8))))
	}
	last := &chunks[len(chunks)-1]
	*last = append(*last, e)
	pl.elems[k] = chunks
}

// joined returns a batch's elements as one exactly sized slice.
func joined(chunks [][]nftables.SetElement) []nftables.SetElement {
	if len(chunks) == 1 {
		return slices.Clip(chunks[0])
	}
	return slices.Concat(chunks...)
}

// writeChain makes chain name hold exactly rules, touching it only if it differs.
func (pl *planner) writeChain(name string, rules []rule) {
	pl.writeChainDef(name, nil, rules)
}

// writeChainDef is writeChain for a chain that may be a base chain (def describes its hook).
func (pl *planner) writeChainDef(name string, def *skeletonChain, rules []rule) {
	hs := ruleHashes(rules)
	cur, exists := pl.v.chains.get(name)
	switch {
	case !exists:
		pl.at(phaseCreate, op{kind: opAddChain, name: name, chain: def})
	case slices.Equal(cur, hs):
		return
	default:
		pl.at(phaseRules, op{kind: opFlushChain, name: name})
	}
	for _, r := range rules {
		pl.at(phaseRules, op{kind: opAddRule, name: name, rule: r})
	}
	pl.v.chains.put(name, hs)
	pl.v.index(name, true)
}

// removeChain deletes a chain the kernel holds, and frees its endpoint set id.
func (pl *planner) removeChain(name string) {
	if !pl.v.chains.has(name) {
		return
	}
	pl.at(phaseFlushOld, op{kind: opFlushChain, name: name})
	pl.at(phaseDelete, op{kind: opDelChain, name: name})
	pl.v.chains.del(name)
	pl.v.index(name, false)
	if id, ok := pl.v.ids.get(name); ok {
		pl.setEndpoints(id, nil)
		pl.v.ids.del(name)
		pl.v.byID.del(id)
	}
}

func (pl *planner) removeSet(name string) {
	if !pl.v.sets.at(name) {
		return
	}
	pl.at(phaseDelete, op{kind: opDelSet, name: name})
	pl.v.sets.del(name)
	pl.v.index(name, false)
}

func (pl *planner) addSet(s *nftables.Set) {
	if pl.v.sets.at(s.Name) {
		return
	}
	pl.at(phaseCreate, op{kind: opAddSet, name: s.Name, set: s})
	pl.v.sets.put(s.Name, true)
	pl.v.index(s.Name, true)
}

// setEndpoints makes endpoint set id hold exactly elems in the endpoint map, changing only the
// elements that differ.
func (pl *planner) setEndpoints(id uint32, elems []nftables.SetElement) {
	cur := pl.v.ep.at(id)
	want := map[string]bool{}
	for _, e := range elems {
		want[elemKey(e)] = true
	}
	have := map[string]bool{}
	changed := false
	for _, e := range cur {
		have[elemKey(e)] = true
		if !want[elemKey(e)] {
			pl.elem(bucketOf(id), phaseElemDel, nftables.SetElement{Key: e.Key, IntervalEnd: e.IntervalEnd})
			changed = true
		}
	}
	for _, e := range elems {
		if !have[elemKey(e)] {
			pl.elem(bucketOf(id), phaseElemAdd, e)
			changed = true
		}
	}
	switch {
	case !changed:
	case len(elems) == 0:
		pl.v.ep.del(id)
	default:
		pl.v.ep.put(id, elems)
	}
}

func (pl *planner) setVIP(k vipKey, chain string) {
	cur, ok := pl.v.vips.get(k)
	if ok && cur == chain {
		return
	}
	if ok {
		pl.elem(setVIPs, phaseElemDel, vipElem(pl.t.f, k, ""))
	}
	pl.elem(setVIPs, phaseElemAdd, vipElem(pl.t.f, k, chain))
	pl.v.vips.put(k, chain)
}

func (pl *planner) delVIP(k vipKey, chain string) {
	if cur, ok := pl.v.vips.get(k); !ok || cur != chain {
		return // another port took the key over, or it is already gone
	}
	pl.elem(setVIPs, phaseElemDel, vipElem(pl.t.f, k, ""))
	pl.v.vips.del(k)
}

func (pl *planner) setNodePort(k npKey, chain string) {
	cur, ok := pl.v.nodeports.get(k)
	if ok && cur == chain {
		return
	}
	if ok {
		pl.elem(setNodePorts, phaseElemDel, nodePortElem(k, ""))
	}
	pl.elem(setNodePorts, phaseElemAdd, nodePortElem(k, chain))
	pl.v.nodeports.put(k, chain)
}

func (pl *planner) delNodePort(k npKey, chain string) {
	if cur, ok := pl.v.nodeports.get(k); !ok || cur != chain {
		return
	}
	pl.elem(setNodePorts, phaseElemDel, nodePortElem(k, ""))
	pl.v.nodeports.del(k)
}

// ref changes the reference counts of addrs by d and marks them for syncAddrs.
func ref(refs *overlay[netip.Addr, int], touched map[netip.Addr]bool, addrs []netip.Addr, d int) {
	for _, a := range addrs {
		n := refs.at(a) + d
		if n <= 0 {
			refs.del(a)
		} else {
			refs.put(a, n)
		}
		touched[a] = true
	}
}

// setData makes the kernel hold e, replacing an element of the same key.
func (pl *planner) setData(e dataElem) {
	cur, ok := pl.v.data.get(e.id)
	if ok && cur == e.dataVal {
		return
	}
	if ok {
		pl.elem(e.set(), phaseElemDel, nftables.SetElement{Key: e.id.key.bytes()})
	}
	pl.elem(e.set(), phaseElemAdd, e.element())
	pl.v.data.put(e.id, e.dataVal)
}

// delData deletes e unless another port took its key over.
func (pl *planner) delData(e dataElem) {
	if cur, ok := pl.v.data.get(e.id); !ok || cur.owner != e.owner {
		return
	}
	pl.elem(e.set(), phaseElemDel, nftables.SetElement{Key: e.id.key.bytes()})
	pl.v.data.del(e.id)
}

// ensureClass creates a forwarding class's set and shared chain the first time a port needs it.
func (pl *planner) ensureClass(c classKey) {
	if pl.v.classes.at(c) {
		return
	}
	s, err := classSetDef(pl.t.f, c)
	if err != nil {
		panic(err) // the types are constants: this cannot fail at run time
	}
	pl.at(phaseCreate, op{kind: opAddSet, name: s.Name, set: s})
	pl.writeChain(pickChain(c), []rule{pickRule(pl.t.f, c)})
	pl.v.classes.put(c, true)
	pl.servicesDirty = true
}

// dropClass deletes a class nobody uses.
func (pl *planner) dropClass(c classKey) {
	if !pl.v.classes.at(c) {
		return
	}
	pl.removeChain(pickChain(c))
	pl.at(phaseDelete, op{kind: opDelSet, name: dataSet(c.space, c.route, classOf(c.k))})
	pl.v.classes.del(c)
	pl.servicesDirty = true
}

// gcClasses drops the classes no element refers to.
func (pl *planner) gcClasses() {
	used := map[string]bool{}
	for id := range pl.v.data.all() {
		used[id.set.name()] = true
	}
	var unused []classKey
	for c := range pl.v.classes.all() {
		if !used[dataSet(c.space, c.route, classOf(c.k))] {
			unused = append(unused, c)
		}
	}
	for _, c := range unused {
		pl.dropClass(c)
	}
}

// syncAddrs turns the reference counts of touched addresses into elements of set.
func (pl *planner) syncAddrs(set string, refs *overlay[netip.Addr, int], touched map[netip.Addr]bool, key func(netip.Addr) []byte) {
	have := pl.v.addrs(set)
	for a := range touched {
		want := refs.at(a) > 0
		if want == have.at(a) {
			continue
		}
		if want {
			pl.elem(set, phaseCreate, nftables.SetElement{Key: key(a)})
			have.put(a, true)
		} else {
			pl.elem(set, phaseDelete, nftables.SetElement{Key: key(a)})
			have.del(a)
		}
	}
}

// finish turns reference count changes into element changes and returns the family's plan:
// the operations in phase order, element batches sorted by set within each phase.
func (pl *planner) finish() *familyPlan {
	if pl.servicesDirty {
		pl.writeChain(chainServices, servicesRules(pl.t.f, pl.t.cfg, maps.Collect(pl.v.classes.all())))
		pl.servicesDirty = false
	}
	f := pl.t.f
	pl.syncAddrs(setClusterIPs, &pl.v.ipRefs, pl.ips, f.addr)
	pl.syncAddrs(setHairpin, &pl.v.pairRefs, pl.pairs, func(a netip.Addr) []byte { return append(f.addr(a), f.addr(a)...) })
	fp := &familyPlan{t: pl.t, next: pl.v, cleanups: pl.cleanups}
	keys := slices.SortedFunc(maps.Keys(pl.elems), func(a, b elemBatchKey) int {
		if a.phase != b.phase {
			return a.phase - b.phase
		}
		return strings.Compare(a.set, b.set)
	})
	n := len(keys)
	for _, ops := range pl.phases {
		n += len(ops)
	}
	fp.ops = make([]op, 0, n)
	for phase := range numPhases {
		fp.ops = append(fp.ops, pl.phases[phase]...)
		for len(keys) > 0 && keys[0].phase == phase {
			kind := opAddElems
			if phase == phaseElemDel || phase == phaseDelete {
				kind = opDelElems
			}
			fp.ops = append(fp.ops, op{kind: kind, name: keys[0].set, elems: joined(pl.elems[keys[0]])})
			keys = keys[1:]
		}
	}
	return fp
}

// vipElem encodes a frontend map element; chain empty leaves the verdict out (for deletes).
func vipElem(f *family, k vipKey, chain string) nftables.SetElement {
	key := append(append(f.addr(k.addr), padProto(k.proto)...), padPort(uint32(k.port))...)
	return verdictElem(key, chain)
}

func nodePortElem(k npKey, chain string) nftables.SetElement {
	return verdictElem(append(padProto(k.proto), padPort(uint32(k.port))...), chain)
}

func verdictElem(key []byte, chain string) nftables.SetElement {
	e := nftables.SetElement{Key: key}
	if chain != "" {
		e.VerdictData = &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}
	}
	return e
}
