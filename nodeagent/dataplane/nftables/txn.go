package nftables

import (
	"bytes"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
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

type op func(cc *nftables.Conn) error

// txn plans one netlink transaction for one family. It updates the kernel state as it plans and
// keeps an undo log, so a transaction the kernel refuses leaves the state as it was.
type txn struct {
	t      *familyTable
	phases [numPhases][]op
	// elems collects element changes per set and phase, sent as a few large messages.
	elems    map[elemBatchKey][]nftables.SetElement
	undo     []func()
	ips      map[netip.Addr]bool // ClusterIPs whose reference count changed
	pairs    map[netip.Addr]bool // endpoints whose reference count changed
	messages int
	// servicesDirty means the classes changed: the services chain is rewritten at finish.
	servicesDirty bool
	// cleanups run after the kernel accepted the transaction (UDP conntrack).
	cleanups []conntrackJob
}

type elemBatchKey struct {
	set   string
	phase int
}

func newTxn(t *familyTable) *txn {
	return &txn{t: t, elems: map[elemBatchKey][]nftables.SetElement{}, ips: map[netip.Addr]bool{}, pairs: map[netip.Addr]bool{}}
}

func (tx *txn) empty() bool {
	for _, p := range tx.phases {
		if len(p) > 0 {
			return false
		}
	}
	return len(tx.elems) == 0
}

func (tx *txn) at(phase int, o op) {
	tx.phases[phase] = append(tx.phases[phase], o)
	tx.messages++
}

func (tx *txn) elem(set string, phase int, e nftables.SetElement) {
	k := elemBatchKey{set, phase}
	tx.elems[k] = append(tx.elems[k], e)
}

// remember records how to restore m[k].
func remember[K comparable, V any](tx *txn, m map[K]V, k K) {
	old, had := m[k]
	tx.undo = append(tx.undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
}

func (tx *txn) rollback() {
	for i := len(tx.undo) - 1; i >= 0; i-- {
		tx.undo[i]()
	}
	tx.undo = nil
}

func (tx *txn) setChain(name string, hashes []string) {
	remember(tx, tx.t.k.chains, name)
	tx.t.k.chains[name] = hashes
	tx.t.index(name, true)
	tx.undo = append(tx.undo, func() {
		if _, ok := tx.t.k.chains[name]; !ok {
			tx.t.index(name, false)
		}
	})
}

func (tx *txn) dropChain(name string) {
	remember(tx, tx.t.k.chains, name)
	delete(tx.t.k.chains, name)
	tx.t.index(name, false)
	tx.undo = append(tx.undo, func() {
		if _, ok := tx.t.k.chains[name]; ok {
			tx.t.index(name, true)
		}
	})
}

// writeChain makes chain name hold exactly rules, touching it only if it differs.
func (tx *txn) writeChain(name string, rules []rule) {
	hs := ruleHashes(rules)
	cur, exists := tx.t.k.chains[name]
	switch {
	case !exists:
		tx.at(phaseCreate, addChainOp(tx.t.table, name))
	case sameHashes(cur, hs):
		return
	default:
		tx.at(phaseRules, flushChainOp(tx.t.table, name))
	}
	for _, r := range rules {
		tx.at(phaseRules, addRuleOp(tx.t.table, name, r))
	}
	tx.setChain(name, hs)
}

// removeChain deletes a chain the kernel holds.
func (tx *txn) removeChain(name string) {
	if _, ok := tx.t.k.chains[name]; !ok {
		return
	}
	tx.at(phaseFlushOld, flushChainOp(tx.t.table, name))
	tx.at(phaseDelete, delChainOp(tx.t.table, name))
	tx.dropChain(name)
	if id, ok := tx.t.ids[name]; ok {
		tx.setEndpoints(id, nil)
		remember(tx, tx.t.ids, name)
		remember(tx, tx.t.byID, id)
		delete(tx.t.ids, name)
		delete(tx.t.byID, id)
	}
}

func (tx *txn) removeSet(name string) {
	if !tx.t.k.sets[name] {
		return
	}
	tx.at(phaseDelete, delSetOp(tx.t.table, name))
	remember(tx, tx.t.k.sets, name)
	delete(tx.t.k.sets, name)
	tx.t.index(name, false)
	tx.undo = append(tx.undo, func() {
		if tx.t.k.sets[name] {
			tx.t.index(name, true)
		}
	})
}

func (tx *txn) addSet(s *nftables.Set) {
	if tx.t.k.sets[s.Name] {
		return
	}
	tx.at(phaseCreate, addSetOp(tx.t.table, s))
	remember(tx, tx.t.k.sets, s.Name)
	tx.t.k.sets[s.Name] = true
	tx.t.index(s.Name, true)
	tx.undo = append(tx.undo, func() {
		if !tx.t.k.sets[s.Name] {
			tx.t.index(s.Name, false)
		}
	})
}

// setEndpoints makes endpoint set id hold exactly elems in the endpoint map, changing only the
// elements that differ.
func (tx *txn) setEndpoints(id uint32, elems []nftables.SetElement) {
	cur := tx.t.k.ep[id]
	want := map[string]bool{}
	for _, e := range elems {
		want[elemKey(e)] = true
	}
	have := map[string]bool{}
	changed := false
	for _, e := range cur {
		have[elemKey(e)] = true
		if !want[elemKey(e)] {
			tx.elem(bucketOf(id), phaseElemDel, nftables.SetElement{Key: e.Key, IntervalEnd: e.IntervalEnd})
			changed = true
		}
	}
	for _, e := range elems {
		if !have[elemKey(e)] {
			tx.elem(bucketOf(id), phaseElemAdd, e)
			changed = true
		}
	}
	if !changed {
		return
	}
	remember(tx, tx.t.k.ep, id)
	if len(elems) == 0 {
		delete(tx.t.k.ep, id)
	} else {
		tx.t.k.ep[id] = elems
	}
}

func (tx *txn) setVIP(k vipKey, chain string) {
	cur, ok := tx.t.k.vips[k]
	if ok && cur == chain {
		return
	}
	if ok {
		tx.elem(setVIPs, phaseElemDel, vipElem(tx.t.f, k, ""))
	}
	tx.elem(setVIPs, phaseElemAdd, vipElem(tx.t.f, k, chain))
	remember(tx, tx.t.k.vips, k)
	tx.t.k.vips[k] = chain
}

func (tx *txn) delVIP(k vipKey, chain string) {
	if cur, ok := tx.t.k.vips[k]; !ok || cur != chain {
		return // another port took the key over, or it is already gone
	}
	tx.elem(setVIPs, phaseElemDel, vipElem(tx.t.f, k, ""))
	remember(tx, tx.t.k.vips, k)
	delete(tx.t.k.vips, k)
}

func (tx *txn) setNodePort(k npKey, chain string) {
	cur, ok := tx.t.k.nodeports[k]
	if ok && cur == chain {
		return
	}
	if ok {
		tx.elem(setNodePorts, phaseElemDel, nodePortElem(k, ""))
	}
	tx.elem(setNodePorts, phaseElemAdd, nodePortElem(k, chain))
	remember(tx, tx.t.k.nodeports, k)
	tx.t.k.nodeports[k] = chain
}

func (tx *txn) delNodePort(k npKey, chain string) {
	if cur, ok := tx.t.k.nodeports[k]; !ok || cur != chain {
		return
	}
	tx.elem(setNodePorts, phaseElemDel, nodePortElem(k, ""))
	remember(tx, tx.t.k.nodeports, k)
	delete(tx.t.k.nodeports, k)
}

func (tx *txn) ref(refs map[netip.Addr]int, touched map[netip.Addr]bool, addrs []netip.Addr, d int) {
	for _, a := range addrs {
		remember(tx, refs, a)
		refs[a] += d
		if refs[a] <= 0 {
			delete(refs, a)
		}
		touched[a] = true
	}
}

func (tx *txn) setPort(o *portObjects) {
	remember(tx, tx.t.ports, o.base)
	tx.t.ports[o.base] = o
}

func (tx *txn) delPort(base string) {
	remember(tx, tx.t.ports, base)
	delete(tx.t.ports, base)
}

// upsert plans a port's objects, replacing what the port had.
func (tx *txn) upsert(o *portObjects) {
	old := tx.t.ports[o.base]
	for _, name := range slices.Sorted(maps.Keys(o.sets)) {
		// Affinity sets are per backend: one that left goes with dropOld, and the clients
		// of the backends that stay keep their entries.
		tx.addSet(o.sets[name])
	}
	for _, id := range slices.Sorted(maps.Keys(o.ep)) {
		tx.setEndpoints(id, o.ep[id])
	}
	for c := range o.classes {
		tx.ensureClass(c)
	}
	for _, id := range slices.Sorted(maps.Keys(o.data)) {
		tx.setData(o.data[id])
	}
	for _, name := range slices.Sorted(maps.Keys(o.chains)) {
		tx.writeChain(name, o.chains[name])
	}
	for k, c := range o.vips {
		tx.setVIP(k, c)
	}
	for k, c := range o.nodeports {
		tx.setNodePort(k, c)
	}
	tx.ref(tx.t.ipRefs, tx.ips, o.clusterIPs, 1)
	tx.ref(tx.t.pairRefs, tx.pairs, o.hairpin, 1)
	if old != nil {
		tx.dropOld(old, o)
	}
	tx.setPort(o)
	tx.cleanups = append(tx.cleanups, conntrackJobs(old, o)...)
}

// dropOld removes what old had and o does not.
func (tx *txn) dropOld(old, o *portObjects) {
	for id, e := range old.data {
		if o == nil || o.data[id].set == "" {
			tx.delData(e)
		}
	}
	for k, c := range old.vips {
		if o == nil || o.vips[k] != c {
			tx.delVIP(k, c)
		}
	}
	for k, c := range old.nodeports {
		if o == nil || o.nodeports[k] != c {
			tx.delNodePort(k, c)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(tx.t.k.byBase[old.base])) {
		if o != nil {
			if _, keep := o.chains[name]; keep {
				continue
			}
			if _, keep := o.sets[name]; keep {
				continue
			}
		}
		if tx.t.k.sets[name] {
			tx.removeSet(name)
		} else {
			tx.removeChain(name)
		}
	}
	if !old.restored {
		tx.ref(tx.t.ipRefs, tx.ips, old.clusterIPs, -1)
		tx.ref(tx.t.pairRefs, tx.pairs, old.hairpin, -1)
	}
}

// remove plans the removal of a port.
func (tx *txn) remove(base string) {
	old := tx.t.ports[base]
	if old == nil {
		return
	}
	tx.dropOld(old, nil)
	tx.delPort(base)
	tx.cleanups = append(tx.cleanups, conntrackJobs(old, nil)...)
}

// setData makes the kernel hold e, replacing an element of the same key.
func (tx *txn) setData(e dataElem) {
	cur, ok := tx.t.k.data[e.id()]
	if ok && bytes.Equal(cur.val, e.val) && cur.owner == e.owner {
		return
	}
	if ok {
		tx.elem(e.set, phaseElemDel, nftables.SetElement{Key: e.key})
	}
	tx.elem(e.set, phaseElemAdd, e.element())
	remember(tx, tx.t.k.data, e.id())
	tx.t.k.data[e.id()] = e
}

// delData deletes e unless another port took its key over.
func (tx *txn) delData(e dataElem) {
	if cur, ok := tx.t.k.data[e.id()]; !ok || cur.owner != e.owner {
		return
	}
	tx.elem(e.set, phaseElemDel, nftables.SetElement{Key: e.key})
	remember(tx, tx.t.k.data, e.id())
	delete(tx.t.k.data, e.id())
}

// ensureClass creates a forwarding class's set and shared chain the first time a port needs it.
func (tx *txn) ensureClass(c classKey) {
	if tx.t.k.classes[c] {
		return
	}
	s, err := classSetDef(tx.t.f, c)
	if err != nil {
		panic(err) // the types are constants: this cannot fail at run time
	}
	tx.at(phaseCreate, addSetOp(tx.t.table, s))
	tx.writeChain(pickChain(c), []rule{pickRule(tx.t.f, c)})
	remember(tx, tx.t.k.classes, c)
	tx.t.k.classes[c] = true
	tx.servicesDirty = true
}

// dropClass deletes a class nobody uses.
func (tx *txn) dropClass(c classKey) {
	if !tx.t.k.classes[c] {
		return
	}
	tx.removeChain(pickChain(c))
	tx.at(phaseDelete, delSetOp(tx.t.table, dataSet(c.space, c.route, classOf(c.k))))
	remember(tx, tx.t.k.classes, c)
	delete(tx.t.k.classes, c)
	tx.servicesDirty = true
}

// gcClasses drops the classes no element refers to.
func (tx *txn) gcClasses() {
	used := map[string]bool{}
	for _, e := range tx.t.k.data {
		used[e.set] = true
	}
	for c := range tx.t.k.classes {
		if !used[dataSet(c.space, c.route, classOf(c.k))] {
			tx.dropClass(c)
		}
	}
}

// finish turns reference count changes into element changes.
func (tx *txn) finish() {
	if tx.servicesDirty {
		tx.writeChain(chainServices, servicesRules(tx.t.f, tx.t.cfg, tx.t.k.classes))
		tx.servicesDirty = false
	}
	tx.syncAddrs(setClusterIPs, tx.t.k.clusterIPs, tx.t.ipRefs, tx.ips, func(a netip.Addr) []byte { return tx.t.f.addr(a) })
	tx.syncAddrs(setHairpin, tx.t.k.hairpin, tx.t.pairRefs, tx.pairs, func(a netip.Addr) []byte {
		return append(tx.t.f.addr(a), tx.t.f.addr(a)...)
	})
	tx.ips, tx.pairs = map[netip.Addr]bool{}, map[netip.Addr]bool{}
}

func (tx *txn) syncAddrs(set string, have map[netip.Addr]bool, refs map[netip.Addr]int, touched map[netip.Addr]bool, key func(netip.Addr) []byte) {
	for a := range touched {
		want := refs[a] > 0
		if want == have[a] {
			continue
		}
		remember(tx, have, a)
		if want {
			tx.elem(set, phaseCreate, nftables.SetElement{Key: key(a)})
			have[a] = true
		} else {
			tx.elem(set, phaseDelete, nftables.SetElement{Key: key(a)})
			delete(have, a)
		}
	}
}
