package nftables

import (
	"maps"
	"slices"
)

// upsert plans a port's objects, replacing what the port had.
func (pl *planner) upsert(o *portObjects) {
	old := pl.v.ports.at(o.base)
	for _, name := range slices.Sorted(maps.Keys(o.sets)) {
		// Affinity sets are per backend: one that left goes with dropOld, and the clients
		// of the backends that stay keep their entries.
		pl.addSet(o.sets[name])
	}
	for _, id := range slices.Sorted(maps.Keys(o.ep)) {
		pl.setEndpoints(id, o.ep[id])
	}
	for _, c := range o.classes {
		pl.ensureClass(c)
	}
	pl.v.data.reserve(len(o.data))
	for _, e := range o.data {
		pl.setData(e)
	}
	for _, name := range slices.Sorted(maps.Keys(o.chains)) {
		pl.writeChain(name, o.chains[name])
	}
	for k, c := range o.vips {
		pl.setVIP(k, c)
	}
	for k, c := range o.nodeports {
		pl.setNodePort(k, c)
	}
	ref(&pl.v.ipRefs, pl.ips, o.clusterIPs, 1)
	ref(&pl.v.pairRefs, pl.pairs, o.hairpin, 1)
	if old != nil {
		pl.dropOld(old, o)
	}
	pl.v.ports.put(o.base, o)
	pl.cleanups = append(pl.cleanups, conntrackJobs(old, o)...)
}

// dropOld removes what old had and o (nil for a removal) does not.
func (pl *planner) dropOld(old, o *portObjects) {
	for _, e := range old.data {
		if o == nil {
			pl.delData(e)
		} else if _, kept := o.dataOf(e.id); !kept {
			pl.delData(e)
		}
	}
	for k, c := range old.vips {
		if o == nil || o.vips[k] != c {
			pl.delVIP(k, c)
		}
	}
	for k, c := range old.nodeports {
		if o == nil || o.nodeports[k] != c {
			pl.delNodePort(k, c)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pl.v.byBase.at(old.base))) {
		if o != nil && o.owns(name) {
			continue
		}
		if pl.v.sets.at(name) {
			pl.removeSet(name)
		} else {
			pl.removeChain(name)
		}
	}
	if !old.restored {
		ref(&pl.v.ipRefs, pl.ips, old.clusterIPs, -1)
		ref(&pl.v.pairRefs, pl.pairs, old.hairpin, -1)
	}
}

// remove plans the removal of a port.
func (pl *planner) remove(base string) {
	old := pl.v.ports.at(base)
	if old == nil {
		return
	}
	pl.dropOld(old, nil)
	pl.v.ports.del(base)
	pl.cleanups = append(pl.cleanups, conntrackJobs(old, nil)...)
}

// owns reports whether name is one of the port's chains or sets.
func (o *portObjects) owns(name string) bool {
	_, chain := o.chains[name]
	_, set := o.sets[name]
	return chain || set
}
