package nftables

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/google/nftables"
)

// kernelState is what one family's table holds, as far as this instance knows: the table-wide
// sets' elements, and per chain the hashes of its rules. Apply diffs against it instead of listing
// the table; Reconcile refreshes it from a dump.
type kernelState struct {
	chains map[string][]string // chain → rule hashes, in order
	sets   map[string]bool     // per-port sets (affinity sets)
	// ep holds the endpoint map's elements per endpoint set id; ids the id of each set chain,
	// read from its rule comment.
	ep  map[uint32][]nftables.SetElement
	ids map[string]uint32
	// data holds the data path's elements by id; classes the forwarding classes whose
	// set and chain exist.
	data    map[dataID]dataVal
	classes map[classKey]bool
	// setNames lists every set of the table, as dumped.
	setNames map[string]bool
	// byBase indexes the per-port chains and sets by the base their names carry.
	byBase     map[string]map[string]bool
	vips       map[vipKey]string
	nodeports  map[npKey]string
	clusterIPs map[netip.Addr]bool
	hairpin    map[netip.Addr]bool
	npAddrs    map[netip.Addr]bool
}

func newKernelState() *kernelState {
	return &kernelState{
		chains: map[string][]string{}, sets: map[string]bool{}, ep: map[uint32][]nftables.SetElement{}, ids: map[string]uint32{},
		data: map[dataID]dataVal{}, classes: map[classKey]bool{}, setNames: map[string]bool{}, byBase: map[string]map[string]bool{},
		vips: map[vipKey]string{}, nodeports: map[npKey]string{},
		clusterIPs: map[netip.Addr]bool{}, hairpin: map[netip.Addr]bool{}, npAddrs: map[netip.Addr]bool{},
	}
}

// familyTable is one family's table: the kernel state, the ports applied to it, and the reference
// counts of elements several ports share.
type familyTable struct {
	f     *family
	table *nftables.Table
	skel  *skeleton
	cfg   *renderConfig
	k     *kernelState
	ports map[string]*portObjects
	// ids are the endpoint set ids of set chains (see slotBits); byID is the reverse.
	ids      map[string]uint32
	byID     map[uint32]string
	nextID   uint32
	ipRefs   map[netip.Addr]int // ClusterIP → ports using it
	pairRefs map[netip.Addr]int // endpoint → ports using it
}

// planned is a family's view as a plan leaves it: every map the planner changes, under the
// plan's changes. Planning reads and writes only this; commit applies it after the kernel's yes.
type planned struct {
	chains     overlay[string, []string]
	sets       overlay[string, bool]
	setNames   overlay[string, bool]
	byBase     overlay[string, map[string]bool]
	ep         overlay[uint32, []nftables.SetElement]
	data       overlay[dataID, dataVal]
	classes    overlay[classKey, bool]
	vips       overlay[vipKey, string]
	nodeports  overlay[npKey, string]
	clusterIPs overlay[netip.Addr, bool]
	hairpin    overlay[netip.Addr, bool]
	npAddrs    overlay[netip.Addr, bool]
	ports      overlay[string, *portObjects]
	ids        overlay[string, uint32]
	byID       overlay[uint32, string]
	ipRefs     overlay[netip.Addr, int]
	pairRefs   overlay[netip.Addr, int]
}

func (t *familyTable) plan() *planned {
	k := t.k
	return &planned{
		chains: newOverlay(&k.chains), sets: newOverlay(&k.sets), setNames: newOverlay(&k.setNames),
		byBase: newOverlay(&k.byBase), ep: newOverlay(&k.ep), data: newOverlay(&k.data),
		classes: newOverlay(&k.classes), vips: newOverlay(&k.vips), nodeports: newOverlay(&k.nodeports),
		clusterIPs: newOverlay(&k.clusterIPs), hairpin: newOverlay(&k.hairpin), npAddrs: newOverlay(&k.npAddrs),
		ports: newOverlay(&t.ports), ids: newOverlay(&t.ids), byID: newOverlay(&t.byID),
		ipRefs: newOverlay(&t.ipRefs), pairRefs: newOverlay(&t.pairRefs),
	}
}

// addrs returns the overlay of one of the address sets the planner keeps by reference count.
func (v *planned) addrs(set string) *overlay[netip.Addr, bool] {
	switch set {
	case setClusterIPs:
		return &v.clusterIPs
	case setHairpin:
		return &v.hairpin
	}
	return &v.npAddrs
}

// apply makes the view what the plan left: called once the kernel accepted the transaction.
func (v *planned) apply() {
	v.chains.apply()
	v.sets.apply()
	v.setNames.apply()
	v.byBase.apply()
	v.ep.apply()
	v.data.apply()
	v.classes.apply()
	v.vips.apply()
	v.nodeports.apply()
	v.clusterIPs.apply()
	v.hairpin.apply()
	v.npAddrs.apply()
	v.ports.apply()
	v.ids.apply()
	v.byID.apply()
	v.ipRefs.apply()
	v.pairRefs.apply()
}

// index records that a per-port chain or set exists (add) or not, under the base its name holds.
func (v *planned) index(name string, add bool) {
	_, base, ok := parseObjectName(name)
	if !ok {
		return
	}
	cur := v.byBase.at(base)
	if cur[name] == add {
		return
	}
	next := maps.Clone(cur)
	if next == nil {
		next = map[string]bool{}
	}
	if add {
		next[name] = true
	} else {
		delete(next, name)
	}
	if len(next) == 0 {
		v.byBase.del(base)
		return
	}
	v.byBase.put(base, next)
}

// restorePorts turns per-port objects found in the kernel into placeholder ports, so that Prune
// and Apply can remove or replace what an earlier run left, without knowing its rules.
func (t *familyTable) restorePorts() {
	for base, names := range t.k.byBase {
		if _, known := t.ports[base]; known {
			continue
		}
		o := &portObjects{base: base, fam: t.f, restored: true, chains: map[string][]rule{},
			sets: map[string]*nftables.Set{}, vips: map[vipKey]string{}, nodeports: map[npKey]string{}}
		for n := range names {
			if t.k.sets[n] {
				o.sets[n] = &nftables.Set{Name: n}
			} else {
				o.chains[n] = nil
			}
		}
		t.ports[base] = o
	}
	for k, c := range t.k.vips {
		if _, base, ok := parseObjectName(c); ok && t.ports[base] != nil && t.ports[base].restored {
			t.ports[base].vips[k] = c
		}
	}
	for id, v := range t.k.data {
		e := dataElem{id: id, dataVal: v}
		if e.owner == "" {
			continue // not ours: Reconcile deletes it
		}
		o := t.ports[e.owner]
		if o == nil {
			o = &portObjects{base: e.owner, fam: t.f, restored: true, chains: map[string][]rule{},
				sets: map[string]*nftables.Set{}, vips: map[vipKey]string{}, nodeports: map[npKey]string{}}
			t.ports[e.owner] = o
		}
		if !o.restored {
			continue
		}
		o.data = append(o.data, e)
	}
	for _, o := range t.ports {
		if o.restored {
			slices.SortFunc(o.data, compareData)
		}
	}
	for k, c := range t.k.nodeports {
		if _, base, ok := parseObjectName(c); ok && t.ports[base] != nil && t.ports[base].restored {
			t.ports[base].nodeports[k] = c
		}
	}
}

func ruleHashes(rs []rule) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.hash()
	}
	return out
}

// setID returns the endpoint set id of a set chain, allocating the next free one.
func (t *familyTable) setID(chain string) (uint32, error) {
	if id, ok := t.ids[chain]; ok {
		return id, nil
	}
	for range maxSetID {
		t.nextID = t.nextID%maxSetID + 1
		if _, used := t.byID[t.nextID]; !used {
			t.ids[chain], t.byID[t.nextID] = t.nextID, chain
			return t.nextID, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d endpoint set ids are in use", ErrInvalidPort, maxSetID)
}

// elemKey identifies an element of the endpoint map, data included.
func elemKey(e nftables.SetElement) string {
	return fmt.Sprintf("%x/%t/%x", e.Key, e.IntervalEnd, e.Val)
}
