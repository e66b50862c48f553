package nftables

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
)

// resync replaces the view with what the kernel holds and plans, in one transaction, whatever
// makes the tables match the skeleton and every applied port again. At start it creates the
// tables or adopts an earlier agent's; later it believes the kernel after a transaction whose
// acknowledgements were lost. Under d.mu. (Reconcile reads without the lock: drift.go.)
func (d *Dataplane) resync() error {
	d.epoch++
	d.unrepaired = true // until the plan below is committed, the view is not what is wanted
	// The generations around the reading: equal, the dump is one moment's state, and the
	// generation is what the tables matched (the repair's commit moves it by one).
	before, err := d.k.generation()
	plan := &Plan{}
	for _, f := range families {
		t := d.tables[f]
		k, err := readState(d.k, f)
		for try := 0; errors.Is(err, errInterrupted) && try < 3; try++ {
			k, err = readState(d.k, f) // someone else's commit tore a dump of rules
		}
		missing := errors.Is(err, errNoTable)
		if err != nil && !missing {
			return fmt.Errorf("read %s table: %w", f.word, err)
		}
		if missing {
			k = newKernelState()
		}
		t.adopt(k)
		pl := newPlanner(t)
		pl.repair(missing, nil)
		plan.fams = append(plan.fams, pl.finish())
	}
	after, aerr := d.k.generation()
	err = errors.Join(err, aerr)
	if err == nil && before == after {
		d.gens.Matched(before)
	} else {
		d.gens.Forget()
	}
	if err := d.commit(plan); err != nil {
		return err
	}
	d.unrepaired = false
	return nil
}

// adopt makes a dump the view: the kernel said so.
func (t *familyTable) adopt(k *kernelState) {
	for name := range k.chains {
		if _, base, ok := parseObjectName(name); ok {
			k.byBase[base] = setWith(k.byBase[base], name)
		}
	}
	for name := range k.sets {
		k.byBase[baseOf(name)] = setWith(k.byBase[baseOf(name)], name)
	}
	t.k = k
	for chain, id := range k.ids {
		if old, ok := t.ids[chain]; ok && old != id {
			delete(t.byID, old)
		}
		t.ids[chain], t.byID[id] = id, chain
	}
	t.restorePorts()
}

func baseOf(name string) string {
	_, base, _ := parseObjectName(name)
	return base
}

func setWith(m map[string]bool, name string) map[string]bool {
	if m == nil {
		m = map[string]bool{}
	}
	m[name] = true
	return m
}

// wanted is what the applied ports and the skeleton need in a table, by name or key.
type wanted struct {
	chains, sets map[string]bool
	data         map[dataID]bool
	vips         map[vipKey]string
	nodeports    map[npKey]string
	restored     bool // some port is a placeholder read back from the kernel
}

// repair plans the differences between the (freshly dumped) view and what is wanted. It gives
// up, returning false, when stop (nil: never) says so between ports.
func (pl *planner) repair(tableMissing bool, stop func() bool) bool {
	if tableMissing {
		pl.at(phaseCreate, op{kind: opAddTable})
	}
	pl.ensureSkeleton()
	w, ok := pl.repairPorts(stop)
	if !ok {
		return false
	}
	for c := range maps.Collect(pl.v.classes.all()) {
		w.chains[pickChain(c)] = true
		pl.writeChain(pickChain(c), []rule{pickRule(pl.t.f, c)})
	}
	pl.dropStrays(w)
	pl.gcClasses()
	if !w.restored {
		// Shared elements nobody references: added by hand, or left by an earlier run.
		for a := range pl.v.addrs(setClusterIPs).all() {
			pl.ips[a] = true
		}
		for a := range pl.v.addrs(setHairpin).all() {
			pl.pairs[a] = true
		}
	}
	return true
}

// repairPorts re-plans every applied port against the dump, which emits only what the kernel
// lost, and returns what the ports want; false when stop said to give up.
func (pl *planner) repairPorts(stop func() bool) (wanted, bool) {
	w := wanted{chains: map[string]bool{}, sets: map[string]bool{}, data: map[dataID]bool{},
		vips: map[vipKey]string{}, nodeports: map[npKey]string{}}
	ports := maps.Collect(pl.v.ports.all())
	for i, base := range slices.Sorted(maps.Keys(ports)) {
		if stop != nil && i%yieldEvery == 0 && stop() {
			return w, false
		}
		o := ports[base]
		if o.restored {
			w.restored = true
		} else {
			pl.upsert(o)
		}
		for n := range o.chains {
			w.chains[n] = true
		}
		for n := range o.sets {
			w.sets[n] = true
		}
		for _, e := range o.data {
			w.data[e.id] = true
		}
		maps.Copy(w.vips, o.vips)
		maps.Copy(w.nodeports, o.nodeports)
	}
	for _, c := range pl.t.skel.chains {
		w.chains[c.name] = true
	}
	return w, true
}

// dropStrays deletes what the table holds and nothing wants: added by hand, or a port's leftover.
func (pl *planner) dropStrays(w wanted) {
	for id, v := range maps.Collect(pl.v.data.all()) {
		if !w.data[id] {
			pl.delData(dataElem{id: id, dataVal: v})
		}
	}
	for id := range maps.Collect(pl.v.ep.all()) {
		if chain, ok := pl.v.byID.get(id); !ok || !w.chains[chain] {
			pl.setEndpoints(id, nil)
		}
	}
	for k, c := range maps.Collect(pl.v.vips.all()) {
		if w.vips[k] != c {
			pl.delVIP(k, c)
		}
	}
	for k, c := range maps.Collect(pl.v.nodeports.all()) {
		if w.nodeports[k] != c {
			pl.delNodePort(k, c)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(maps.Collect(pl.v.chains.all()))) {
		if !w.chains[name] {
			pl.removeChain(name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(maps.Collect(pl.v.sets.all()))) {
		if !w.sets[name] {
			pl.removeSet(name)
		}
	}
}

// ensureSkeleton plans the table-wide sets and chains and the NodePort addresses.
func (pl *planner) ensureSkeleton() {
	t := pl.t
	for _, s := range t.skel.sets {
		if !pl.v.setNames.at(s.Name) {
			pl.at(phaseCreate, op{kind: opAddSet, name: s.Name, set: s})
			pl.v.setNames.put(s.Name, true)
		}
	}
	for _, c := range t.skel.chains {
		rules := c.rules
		if c.name == chainServices {
			rules = servicesRules(t.f, t.cfg, maps.Collect(pl.v.classes.all()))
		}
		pl.writeChainDef(c.name, &c, rules)
	}
	want := map[netip.Addr]bool{}
	have := pl.v.addrs(setNodePortAddrs)
	for _, a := range t.skel.nodePortAddrs {
		want[a] = true
		if !have.at(a) {
			pl.elem(setNodePortAddrs, phaseCreate, nftables.SetElement{Key: t.f.addr(a)})
			have.put(a, true)
		}
	}
	for a := range maps.Collect(have.all()) {
		if !want[a] {
			pl.elem(setNodePortAddrs, phaseDelete, nftables.SetElement{Key: t.f.addr(a)})
			have.del(a)
		}
	}
}
