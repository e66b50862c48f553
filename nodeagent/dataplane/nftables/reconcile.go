package nftables

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
)

// resync replaces the believed kernel state with a dump of the tables and plans, in one
// transaction, whatever makes the tables match the skeleton and every applied port again. At start
// it creates the tables or adopts an earlier agent's; later it is Reconcile.
func (d *Dataplane) resync() error {
	var txs []*txn
	for _, t := range d.tables {
		dm := &dumper{cc: d.cc, nl: d.dumpNL, table: t.table}
		k, err := dm.state()
		missing := errors.Is(err, errNoTable)
		if err != nil && !missing {
			return fmt.Errorf("read %s table: %w", t.f.word, err)
		}
		if missing {
			k = newKernelState()
		}
		for name := range k.chains {
			if _, _, ok := parseObjectName(name); ok {
				k.byBase[baseOf(name)] = setWith(k.byBase[baseOf(name)], name)
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
		tx := newTxn(t)
		tx.repair(missing)
		txs = append(txs, tx)
	}
	return d.commit(txs...)
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

// repair plans the differences between the (freshly dumped) kernel state and what is wanted.
func (tx *txn) repair(tableMissing bool) {
	t := tx.t
	if tableMissing {
		tx.phases[phaseCreate] = append(tx.phases[phaseCreate], func(cc *nftables.Conn) error {
			cc.AddTable(t.table)
			return nil
		})
	}
	tx.ensureSkeleton()
	wantChains := map[string]bool{}
	wantSets := map[string]bool{}
	wantVIPs := map[vipKey]string{}
	wantNPs := map[npKey]string{}
	restored := false
	for _, base := range slices.Sorted(maps.Keys(t.ports)) {
		o := t.ports[base]
		if o.restored {
			restored = true
		} else {
			// Re-planning a port against the dumped state emits only what the kernel lost.
			tx.upsert(o)
		}
		for n := range o.chains {
			wantChains[n] = true
		}
		for n := range o.sets {
			wantSets[n] = true
		}
		maps.Copy(wantVIPs, o.vips)
		maps.Copy(wantNPs, o.nodeports)
	}
	for _, c := range t.skel.chains {
		wantChains[c.name] = true
	}
	for c := range t.k.classes {
		wantChains[pickChain(c)] = true
		tx.writeChain(pickChain(c), []rule{pickRule(t.f, c)})
	}
	wantData := map[string]bool{}
	for _, o := range t.ports {
		for id := range o.data {
			wantData[id] = true
		}
	}
	for id, e := range t.k.data {
		if !wantData[id] {
			tx.delData(e)
		}
	}
	for id := range t.k.ep {
		if chain, ok := t.byID[id]; !ok || !wantChains[chain] {
			tx.setEndpoints(id, nil) // a set nobody owns: added by hand, or a port's leftover
		}
	}
	for k, c := range t.k.vips {
		if wantVIPs[k] != c {
			tx.delVIP(k, c)
		}
	}
	for k, c := range t.k.nodeports {
		if wantNPs[k] != c {
			tx.delNodePort(k, c)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.k.chains)) {
		if !wantChains[name] {
			tx.removeChain(name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.k.sets)) {
		if !wantSets[name] {
			tx.removeSet(name)
		}
	}
	tx.gcClasses()
	if !restored {
		// Shared elements nobody references: added by hand, or left by an earlier run.
		for a := range t.k.clusterIPs {
			tx.ips[a] = true
		}
		for a := range t.k.hairpin {
			tx.pairs[a] = true
		}
	}
}

// ensureSkeleton plans the table-wide sets and chains and the NodePort addresses.
func (tx *txn) ensureSkeleton() {
	t := tx.t
	for _, s := range t.skel.sets {
		if !t.k.setNames[s.Name] {
			tx.at(phaseCreate, addSetOp(t.table, s))
			remember(tx, t.k.setNames, s.Name)
			t.k.setNames[s.Name] = true
		}
	}
	for _, c := range t.skel.chains {
		if c.name == chainServices {
			c.rules = servicesRules(t.f, t.cfg, t.k.classes)
		}
		hs := ruleHashes(c.rules)
		cur, exists := t.k.chains[c.name]
		if exists && sameHashes(cur, hs) {
			continue
		}
		if exists {
			tx.at(phaseRules, flushChainOp(t.table, c.name))
		} else {
			tx.at(phaseCreate, addBaseChainOp(t.table, c))
		}
		for _, r := range c.rules {
			tx.at(phaseRules, addRuleOp(t.table, c.name, r))
		}
		tx.setChain(c.name, hs)
	}
	want := map[netip.Addr]bool{}
	for _, a := range t.skel.nodePortAddrs {
		want[a] = true
		if !t.k.npAddrs[a] {
			tx.elem(setNodePortAddrs, phaseCreate, nftables.SetElement{Key: t.f.addr(a)})
			remember(tx, t.k.npAddrs, a)
			t.k.npAddrs[a] = true
		}
	}
	for a := range t.k.npAddrs {
		if !want[a] {
			tx.elem(setNodePortAddrs, phaseDelete, nftables.SetElement{Key: t.f.addr(a)})
			remember(tx, t.k.npAddrs, a)
			delete(t.k.npAddrs, a)
		}
	}
}
