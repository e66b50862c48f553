package nftables

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// The data path programs ports without chains of their own. Every commit costs the kernel time
// in proportion to the number of chains in the netns (measured: 7 µs for one element with 100
// services, 450 µs with 20,000 chains), so a port that owns chains makes every other port's
// updates slower. Instead, a port is a handful of elements in table-wide sets, and the chains
// are shared: one per dispatch class in use.
//
// Frontends are keyed by address . protocol . port ("fe" space) or, for NodePorts on the node's
// NodePort addresses, by protocol . port ("np" space). Each frontend has a route (the set its
// policy names) and, if external, a short-circuit route ("sc": the cluster set, for traffic from
// this host or its pods). A route's set is in one dispatch class: it forwards over k slots, or it
// drops, or it rejects. The class sets hold the frontends of each class; the services chain
// sends a frontend in class k to chain pick-<space>[-sc]-k, whose one rule picks slot
// numgen mod k and DNATs to the backend the endpoint map holds for frontend . slot.
//
// An endpoint change is thus element changes only: the frontend's slots in the endpoint map,
// and when the slot count changes, its class. A new slot count adds one shared chain.
//
// Ports with session affinity or LB source ranges keep chains of their own (see render.go):
// they are rare, and need per-client state or per-frontend filters the shared chains lack.

// Spaces and routes.
const (
	spaceFE     = "fe"
	spaceNP     = "np"
	routeNormal = ""
	routeShort  = "sc"
)

// Dispatch classes besides k slots.
const (
	classDrop   = "drop"
	classReject = "reject"
)

// dataSet names a table-wide set of the data path: <space>[-sc]-<what>.
func dataSet(space, route, what string) string {
	if route == routeNormal {
		return space + "-" + what
	}
	return space + "-" + route + "-" + what
}

func classOf(k int) string { return "k" + strconv.Itoa(k) }

// pickChain names the shared chain that picks among k slots.
func pickChain(c classKey) string { return "pick-" + dataSet(c.space, c.route, classOf(c.k)) }

// classKey is a dispatch class that forwards over k slots; its set and chain exist while used.
type classKey struct {
	space, route string
	k            int
}

// parseClassSet recognizes the set of a forwarding class.
func parseClassSet(name string) (classKey, bool) {
	for _, space := range []string{spaceFE, spaceNP} {
		for _, route := range []string{routeNormal, routeShort} {
			rest, ok := strings.CutPrefix(name, dataSet(space, route, "k"))
			if !ok || rest == "" || !isDigits(rest) {
				continue
			}
			k, err := strconv.Atoi(rest)
			if err == nil && k > 0 {
				return classKey{space, route, k}, true
			}
		}
	}
	return classKey{}, false
}

// dataElem is one element a port owns in a table-wide set. Its comment names the port, which is
// how a restarted agent learns what an earlier run left.
type dataElem struct {
	id dataID
	dataVal
}

// dataID identifies an element of the data path's sets: its set and key. It is a value, not a
// string, so the view's hundreds of thousands of elements cost no allocation of their own.
type dataID struct {
	set dataSetID
	key packed
}

// dataSetID is the interned name of a data path set (internSet).
type dataSetID uint32

// dataSetNames interns the names of the data path's sets, so that an element's id holds four
// bytes instead of a string. The names are few (the static sets and one per forwarding class)
// and never forgotten. The table is copied on write, so looking a name up takes no lock.
var dataSetNames struct {
	mu  sync.Mutex // taken to add a name
	cur atomic.Pointer[setNameTable]
}

type setNameTable struct {
	ids   map[string]dataSetID
	names []string
}

func internSet(name string) dataSetID {
	if t := dataSetNames.cur.Load(); t != nil {
		if id, ok := t.ids[name]; ok {
			return id
		}
	}
	dataSetNames.mu.Lock()
	defer dataSetNames.mu.Unlock()
	t := dataSetNames.cur.Load()
	if t == nil {
		t = &setNameTable{}
	}
	if id, ok := t.ids[name]; ok {
		return id
	}
	id := dataSetID(len(t.names))
	next := &setNameTable{ids: maps.Clone(t.ids), names: append(slices.Clip(t.names), name)}
	if next.ids == nil {
		next.ids = map[string]dataSetID{}
	}
	next.ids[name] = id
	dataSetNames.cur.Store(next)
	return id
}

// name returns the set's name.
func (s dataSetID) name() string { return dataSetNames.cur.Load().names[s] }

// dataVal is what the view holds of an element besides its id.
type dataVal struct {
	val   packed
	owner string
}

// maxPacked is the longest key or value the data path writes: an IPv6 frontend and slot
// (16 + 4 + 4 + 4 bytes). Read-back skips longer ones: they are not of a shape we write.
const maxPacked = 28

// packed is a short byte string held inline.
type packed struct {
	n uint8
	b [maxPacked]byte
}

// pack packs b; false if it is too long.
func pack(b []byte) (packed, bool) {
	if len(b) > maxPacked {
		return packed{}, false
	}
	p := packed{n: uint8(len(b))}
	copy(p.b[:], b)
	return p, true
}

// bytes returns the packed bytes, nil if there are none.
func (p packed) bytes() []byte {
	if p.n == 0 {
		return nil
	}
	return slices.Clone(p.b[:p.n])
}

// newDataElem makes an element; false if its key or value is longer than any we write.
func newDataElem(set string, key, val []byte, owner string) (dataElem, bool) {
	k, kok := pack(key)
	v, vok := pack(val)
	return dataElem{id: dataID{set: internSet(set), key: k}, dataVal: dataVal{val: v, owner: owner}}, kok && vok
}

func (e dataElem) set() string { return e.id.set.name() }

func (e dataElem) element() nftables.SetElement {
	return nftables.SetElement{Key: e.id.key.bytes(), Val: e.val.bytes(), Comment: e.owner}
}

// compareData orders elements by id, the order a port keeps its elements in.
func compareData(a, b dataElem) int { return compareDataID(a.id, b.id) }

func compareDataID(a, b dataID) int {
	if a.set != b.set {
		return cmp.Compare(a.set, b.set)
	}
	return bytes.Compare(a.key.b[:a.key.n], b.key.b[:b.key.n])
}

// dataOf returns the port's element with the given id.
func (o *portObjects) dataOf(id dataID) (dataElem, bool) {
	i, ok := slices.BinarySearchFunc(o.data, id, func(e dataElem, id dataID) int { return compareDataID(e.id, id) })
	if !ok {
		return dataElem{}, false
	}
	return o.data[i], true
}

// staticDataSets are the data path's sets that always exist, in lookup order.
func staticDataSets(f *family) ([]*nftables.Set, error) {
	feKey, err := nftables.ConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	npKey, err := nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	feSlot, err := nftables.ConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeMark)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	npSlot, err := nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService, nftables.TypeMark)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	backend, err := nftables.ConcatSetType(f.addrType, nftables.TypeInetService)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	var sets []*nftables.Set
	for _, space := range []string{spaceFE, spaceNP} {
		key, slot := feKey, feSlot
		if space == spaceNP {
			key, slot = npKey, npSlot
		}
		for _, route := range []string{routeNormal, routeShort} {
			sets = append(sets,
				&nftables.Set{Name: dataSet(space, route, "ep"), KeyType: slot, DataType: backend, IsMap: true, Concatenation: true},
				&nftables.Set{Name: dataSet(space, route, classDrop), KeyType: key, Concatenation: true},
				&nftables.Set{Name: dataSet(space, route, classReject), KeyType: key, Concatenation: true})
		}
		sets = append(sets, &nftables.Set{Name: dataSet(space, routeNormal, "masq"), KeyType: key, Concatenation: true})
	}
	return sets, nil
}

// classSetDef describes the set of a forwarding class.
func classSetDef(f *family, c classKey) (*nftables.Set, error) {
	types := []nftables.SetDatatype{nftables.TypeInetProto, nftables.TypeInetService}
	if c.space == spaceFE {
		types = append([]nftables.SetDatatype{f.addrType}, types...)
	}
	key, err := nftables.ConcatSetType(types...)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	return &nftables.Set{Name: dataSet(c.space, c.route, classOf(c.k)), KeyType: key, Concatenation: true}, nil
}

// frontendKey loads the frontend key of a space into NFT_REG_1 onwards and returns the next free
// 32-bit register.
func (b *builder) frontendKey(space string) (uint32, string) {
	if space == spaceNP {
		b.ex = append(b.ex,
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_00},
			&expr.Payload{DestRegister: unix.NFT_REG32_01, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
		return unix.NFT_REG32_02, "meta l4proto . th dport"
	}
	b.ex = append(b.ex,
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: b.f.daddrOff, Len: b.f.addrLen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: b.f.afterAddr},
		&expr.Payload{DestRegister: b.f.afterAddr + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2})
	return b.f.afterAddr + 2, b.f.word + " daddr . meta l4proto . th dport"
}

// keyIn matches packets whose frontend key is in set. NodePort keys also need a NodePort address.
func (b *builder) keyIn(space, set string) *builder {
	if space == spaceNP {
		b.addrInSet("daddr", setNodePortAddrs)
	}
	_, text := b.frontendKey(space)
	return b.add(text+" @"+set, &expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set})
}

func (b *builder) accept() *builder { return b.add("accept", &expr.Verdict{Kind: expr.VerdictAccept}) }

// pickRule DNATs to the backend of slot numgen mod k of the packet's frontend.
func pickRule(f *family, c classKey) rule {
	b := newRule(f)
	next, text := b.frontendKey(c.space)
	ep := dataSet(c.space, c.route, "ep")
	b.ex = append(b.ex,
		&expr.Numgen{Register: next, Modulus: uint32(c.k), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, IsDestRegSet: true, SetName: ep},
		b.natFromReg1())
	b.words = append(b.words, fmt.Sprintf("dnat %s to %s . numgen random mod %d map @%s", f.word, text, c.k, ep))
	return b.build()
}

// servicesRules is the services chain for the classes in use: affinity and firewall ports
// through their verdict maps first, then per space the short-circuit routes, then the routes.
func servicesRules(f *family, cfg *renderConfig, classes map[classKey]bool) []rule {
	var rules []rule
	if len(cfg.podCIDRs) > 0 {
		// Traffic to a ClusterIP from outside this node's pods is masqueraded, so replies
		// come back through this node.
		rules = append(rules, newRule(f).addrInSet("daddr", setClusterIPs).jump(chainNonPodMasq).build())
	}
	rules = append(rules,
		newRule(f).frontendVmap(setVIPs).build(),
		newRule(f).addrInSet("daddr", setNodePortAddrs).portVmap(setNodePorts).build())
	sorted := slices.SortedFunc(maps.Keys(classes), func(a, b classKey) int { return a.k - b.k })
	for _, space := range []string{spaceFE, spaceNP} {
		// Short-circuit: from this host (masqueraded, so replies return here) or a local pod.
		sources := []func(*builder) *builder{func(b *builder) *builder { return b.fibSaddrLocal().setMark(cfg.masqBit) }}
		for _, p := range cfg.podCIDRs {
			sources = append(sources, func(b *builder) *builder { return b.saddrIn(p) })
		}
		for _, src := range sources {
			for _, c := range sorted {
				if c.space == space && c.route == routeShort {
					rules = append(rules, src(newRule(f)).keyIn(space, dataSet(space, routeShort, classOf(c.k))).gotoChain(pickChain(c)).build())
				}
			}
			rules = append(rules,
				src(newRule(f)).keyIn(space, dataSet(space, routeShort, classDrop)).drop().build(),
				src(newRule(f)).keyIn(space, dataSet(space, routeShort, classReject)).setMark(cfg.rejectBit).accept().build())
		}
		rules = append(rules, newRule(f).keyIn(space, dataSet(space, routeNormal, "masq")).setMark(cfg.masqBit).build())
		for _, c := range sorted {
			if c.space == space && c.route == routeNormal {
				rules = append(rules, newRule(f).keyIn(space, dataSet(space, routeNormal, classOf(c.k))).gotoChain(pickChain(c)).build())
			}
		}
		rules = append(rules,
			newRule(f).keyIn(space, dataSet(space, routeNormal, classDrop)).drop().build(),
			newRule(f).keyIn(space, dataSet(space, routeNormal, classReject)).setMark(cfg.rejectBit).accept().build())
	}
	return rules
}

// usesChains reports whether a port needs chains of its own: per-client state (affinity) or
// per-frontend source filters (LB source ranges).
func usesChains(sp *v1.ServicePort) bool {
	if sp.SessionAffinity != nil {
		return true
	}
	for _, fe := range sp.Frontends {
		if len(fe.SourceRanges) > 0 {
			return true
		}
	}
	return false
}

// dataFrontends renders a port as data elements.
func (r *renderer) dataFrontends() error {
	sp := r.p.Service
	for i, fe := range sp.Frontends {
		if fe.Port == 0 || fe.Port > 65535 {
			return fmt.Errorf("%w: frontend %d port %d", ErrInvalidPort, i, fe.Port)
		}
		space, key := spaceNP, append(padProto(r.proto), padPort(fe.Port)...)
		if fe.Kind != v1.FrontendKind_FRONTEND_KIND_NODE_PORT {
			addr, err := netip.ParseAddr(fe.Address)
			if err != nil || !r.f.has(addr) {
				return fmt.Errorf("%w: frontend %d address %q", ErrInvalidPort, i, fe.Address)
			}
			addr = addr.Unmap()
			space, key = spaceFE, append(r.f.addr(addr), key...)
			r.o.frontends = append(r.o.frontends, vipKey{addr, r.proto, uint16(fe.Port)})
			if fe.Kind == v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP {
				r.o.clusterIPs = append(r.o.clusterIPs, addr)
			}
		} else {
			r.o.nodePorts = append(r.o.nodePorts, uint16(fe.Port))
		}
		pol := sp.External
		switch fe.Kind {
		case v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP:
			pol = sp.Internal
		case v1.FrontendKind_FRONTEND_KIND_NODE_PORT, v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, v1.FrontendKind_FRONTEND_KIND_EXTERNAL_IP:
		default:
			return fmt.Errorf("%w: frontend %d kind %v", ErrInvalidPort, i, fe.Kind)
		}
		if pol == nil {
			return fmt.Errorf("%w: frontend %d (%v) has no policy", ErrInvalidPort, i, fe.Kind)
		}
		if err := r.route(space, routeNormal, key, pol.Scope); err != nil {
			return err
		}
		if pol.Masquerade {
			r.data(dataSet(space, routeNormal, "masq"), key, nil)
		}
		if fe.Kind != v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP && r.p.Cluster != nil {
			if err := r.route(space, routeShort, key, v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER); err != nil {
				return err
			}
		}
	}
	return nil
}

// data adds an element of the port; render sorts them by id once done.
func (r *renderer) data(set string, key, val []byte) {
	e, ok := newDataElem(set, key, val, r.p.Base)
	if !ok {
		panic(fmt.Sprintf("nftables: element of %s longer than %d bytes", set, maxPacked)) // our own encoding: cannot happen
	}
	r.o.data = append(r.o.data, e)
}

// route puts a frontend into the class of the set scope names, with its slots if it forwards.
func (r *renderer) route(space, route string, key []byte, scope v1.EndpointScope) error {
	set := r.p.Cluster
	if scope == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL {
		set = r.p.Local
	}
	if set == nil {
		return fmt.Errorf("%w: a policy names a set the port lacks", ErrInvalidPort)
	}
	bs, err := r.backends(set)
	if err != nil {
		return err
	}
	idx := slots(bs)
	switch {
	case set.Action == v1.TrafficAction_TRAFFIC_ACTION_DROP:
		r.data(dataSet(space, route, classDrop), key, nil)
	case set.Action != v1.TrafficAction_TRAFFIC_ACTION_FORWARD || len(idx) == 0:
		r.data(dataSet(space, route, classReject), key, nil)
	default:
		r.o.forwards = true
		c := classKey{space, route, len(idx)}
		if !slices.Contains(r.o.classes, c) {
			r.o.classes = append(r.o.classes, c)
		}
		r.data(dataSet(space, route, classOf(c.k)), key, nil)
		for slot, i := range idx {
			r.data(dataSet(space, route, "ep"), append(append([]byte{}, key...), nativeU32(uint32(slot))...),
				append(r.f.addr(bs[i].addr), padPort(bs[i].port)...))
		}
	}
	return nil
}
