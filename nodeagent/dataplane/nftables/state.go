package nftables

import (
	"fmt"
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
	// data holds the data path's elements by dataElem.id; classes the forwarding classes whose
	// set and chain exist.
	data    map[string]dataElem
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
		data: map[string]dataElem{}, classes: map[classKey]bool{}, setNames: map[string]bool{}, byBase: map[string]map[string]bool{},
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

func (t *familyTable) index(name string, add bool) {
	_, base, ok := parseObjectName(name)
	if !ok {
		return
	}
	m := t.k.byBase[base]
	if add {
		if m == nil {
			m = map[string]bool{}
			t.k.byBase[base] = m
		}
		m[name] = true
		return
	}
	delete(m, name)
	if len(m) == 0 {
		delete(t.k.byBase, base)
	}
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
	for id, e := range t.k.data {
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
		if o.data == nil {
			o.data = map[string]dataElem{}
		}
		o.data[id] = e
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

func sameHashes(a, b []string) bool { return slices.Equal(a, b) }

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
