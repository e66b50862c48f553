package nftables

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Errors a port can be rejected with.
var (
	// ErrInvalidPort means the port cannot be programmed as given.
	ErrInvalidPort = errors.New("invalid port")
	// ErrNameTooLong means a kernel object name derived from the port's base is too long.
	ErrNameTooLong = errors.New("object name too long")
)

// defaultAffinityTimeout is Kubernetes' default for sessionAffinityConfig.clientIP.timeoutSeconds.
const defaultAffinityTimeout = 10800 * time.Second

// vipKey is an element of the frontend verdict map.
type vipKey struct {
	addr  netip.Addr
	proto byte
	port  uint16
}

// npKey is an element of the NodePort verdict map.
type npKey struct {
	proto byte
	port  uint16
}

// portObjects is everything one port puts into the table. It is computed without I/O.
type portObjects struct {
	base string
	fam  *family
	// chains maps chain names to their rules; every chain here is owned by the port.
	chains map[string][]rule
	// sets are the port's named sets: affinity maps and endpoint maps.
	sets map[string]*nftables.Set
	// ep holds, per endpoint set id, the port's elements of the table-wide endpoint map.
	ep map[uint32][]nftables.SetElement
	// data are the port's elements in the data path's sets, sorted by id; classes the
	// forwarding classes they use.
	data       []dataElem // sorted by id
	classes    []classKey // without repeats
	vips       map[vipKey]string
	nodeports  map[npKey]string
	clusterIPs []netip.Addr
	hairpin    []netip.Addr
	// udp lists backends and frontends of a UDP port, for conntrack cleanup.
	udp       bool
	backends  []backend
	frontends []vipKey
	nodePorts []uint16
	// forwards is true when some set of the port has backends.
	forwards bool
	// restored marks objects read back from the kernel after a restart: names only, no rules.
	restored bool
}

// renderConfig is what rendering needs from the node.
type renderConfig struct {
	podCIDRs  []netip.Prefix
	masqBit   uint32
	rejectBit uint32
	// setID returns the endpoint set id of a set chain, allocating one the first time.
	setID func(chain string) (uint32, error)
}

// render computes the objects of one port. It fails on ports that contradict the contract.
func render(cfg *renderConfig, p dataplane.Port) (*portObjects, error) {
	sp := p.Service
	if sp == nil {
		return nil, fmt.Errorf("%w: no service", ErrInvalidPort)
	}
	f := familyOf(sp.Family)
	proto, _, ok := dataplane.IPProto(sp.Protocol)
	if !ok {
		return nil, fmt.Errorf("%w: protocol %v", ErrInvalidPort, sp.Protocol)
	}
	r := &renderer{cfg: cfg, f: f, proto: proto, p: p, o: &portObjects{
		base: p.Base, fam: f, chains: map[string][]rule{}, sets: map[string]*nftables.Set{},
		ep: map[uint32][]nftables.SetElement{}, vips: map[vipKey]string{}, nodeports: map[npKey]string{}, udp: proto == 17,
	}}
	build := r.dataFrontends
	if usesChains(sp) {
		build = r.frontends
	}
	if err := build(); err != nil {
		return nil, err
	}
	slices.SortFunc(r.o.hairpin, netip.Addr.Compare)
	r.o.hairpin = slices.Compact(r.o.hairpin)
	// An element rendered twice (two frontends of one key) is kept once, the last one winning,
	// as the map it was kept in before did.
	slices.SortStableFunc(r.o.data, compareData)
	r.o.data = dedupLast(r.o.data)
	r.o.compact()
	return r.o, nil
}

// compact drops what the view need not hold for the port's lifetime: empty maps (a map costs
// memory even when empty, and ten thousand ports hold six each), the spare room append left in
// its slices, and the backends and frontends kept for conntrack cleanup, which only UDP ports use.
func (o *portObjects) compact() {
	if !o.udp {
		o.backends, o.frontends, o.nodePorts = nil, nil, nil
	}
	// Exactly sized copies: append leaves up to twice the room.
	o.backends, o.frontends, o.nodePorts = slices.Clone(o.backends), slices.Clone(o.frontends), slices.Clone(o.nodePorts)
	o.data, o.classes = slices.Clone(o.data), slices.Clone(o.classes)
	o.clusterIPs, o.hairpin = slices.Clone(o.clusterIPs), slices.Clone(o.hairpin)
	o.chains = nilIfEmpty(o.chains)
	o.sets = nilIfEmpty(o.sets)
	o.ep = nilIfEmpty(o.ep)
	o.vips = nilIfEmpty(o.vips)
	o.nodeports = nilIfEmpty(o.nodeports)
}

// dedupLast keeps, of each run of elements with the same id, the last one.
func dedupLast(es []dataElem) []dataElem {
	out := es[:0]
	for i, e := range es {
		if i+1 < len(es) && es[i+1].id == e.id {
			continue
		}
		out = append(out, e)
	}
	return out
}

type renderer struct {
	cfg   *renderConfig
	f     *family
	proto byte
	p     dataplane.Port
	o     *portObjects
}

func (r *renderer) name(kind string) (string, error) { return objectName(kind, r.p.Base) }

func (r *renderer) frontends() error {
	sp := r.p.Service
	var intChain, extChain string
	var err error
	for i, fe := range sp.Frontends {
		if fe.Port == 0 || fe.Port > 65535 {
			return fmt.Errorf("%w: frontend %d port %d", ErrInvalidPort, i, fe.Port)
		}
		port := uint16(fe.Port)
		var addr netip.Addr
		if fe.Kind != v1.FrontendKind_FRONTEND_KIND_NODE_PORT {
			if addr, err = netip.ParseAddr(fe.Address); err != nil || !r.f.has(addr) {
				return fmt.Errorf("%w: frontend %d address %q", ErrInvalidPort, i, fe.Address)
			}
			addr = addr.Unmap()
			r.o.frontends = append(r.o.frontends, vipKey{addr, r.proto, port})
		}
		if fe.Kind == v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP {
			if intChain == "" {
				if intChain, err = r.internalChain(); err != nil {
					return err
				}
			}
			r.o.vips[vipKey{addr, r.proto, port}] = intChain
			r.o.clusterIPs = append(r.o.clusterIPs, addr)
			continue
		}
		if extChain == "" {
			if extChain, err = r.externalChain(); err != nil {
				return err
			}
		}
		switch fe.Kind {
		case v1.FrontendKind_FRONTEND_KIND_NODE_PORT:
			r.o.nodeports[npKey{r.proto, port}] = extChain
			r.o.nodePorts = append(r.o.nodePorts, port)
		case v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER:
			target := extChain
			if len(fe.SourceRanges) > 0 {
				if target, err = r.firewallChain(i, fe.SourceRanges, extChain); err != nil {
					return err
				}
			}
			r.o.vips[vipKey{addr, r.proto, port}] = target
		case v1.FrontendKind_FRONTEND_KIND_EXTERNAL_IP:
			r.o.vips[vipKey{addr, r.proto, port}] = extChain
		default:
			return fmt.Errorf("%w: frontend %d kind %v", ErrInvalidPort, i, fe.Kind)
		}
	}
	return nil
}

// internalChain returns the chain for ClusterIP traffic: the set's own chain unless the policy
// masquerades. Sources outside the pod CIDRs are masqueraded by the services chain for every
// ClusterIP: one chain less per port, and every commit costs time per chain in the table.
func (r *renderer) internalChain() (string, error) {
	pol := r.p.Service.Internal
	if pol == nil {
		return "", fmt.Errorf("%w: ClusterIP frontend without an internal policy", ErrInvalidPort)
	}
	target, err := r.setChain(pol.Scope)
	if err != nil || !pol.Masquerade {
		return target, err
	}
	name, err := r.name(kindInternal)
	if err != nil {
		return "", err
	}
	r.o.chains[name] = []rule{newRule(r.f).setMark(r.cfg.masqBit).gotoChain(target).build()}
	return name, nil
}

// externalChain handles NodePort, LB and external IP traffic. Traffic from this host or its pods
// short-circuits to the cluster set (the host's own is masqueraded so replies come back here).
func (r *renderer) externalChain() (string, error) {
	pol := r.p.Service.External
	if pol == nil {
		return "", fmt.Errorf("%w: external frontend without an external policy", ErrInvalidPort)
	}
	name, err := r.name(kindExternal)
	if err != nil {
		return "", err
	}
	target, err := r.setChain(pol.Scope)
	if err != nil {
		return "", err
	}
	var rules []rule
	if r.p.Cluster != nil {
		cl, err := r.setChain(v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER)
		if err != nil {
			return "", err
		}
		rules = append(rules, newRule(r.f).fibSaddrLocal().setMark(r.cfg.masqBit).gotoChain(cl).build())
		for _, p := range r.cfg.podCIDRs {
			rules = append(rules, newRule(r.f).saddrIn(p).gotoChain(cl).build())
		}
	}
	if pol.Masquerade {
		rules = append(rules, newRule(r.f).setMark(r.cfg.masqBit).build())
	}
	rules = append(rules, newRule(r.f).gotoChain(target).build())
	r.o.chains[name] = rules
	return name, nil
}

// firewallChain admits only the LB source ranges of frontend i.
func (r *renderer) firewallChain(i int, ranges []string, ext string) (string, error) {
	name, err := r.name(fmt.Sprintf("%s%d", kindFirewall, i))
	if err != nil {
		return "", err
	}
	var rules []rule
	for _, s := range ranges {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return "", fmt.Errorf("%w: source range %q: %w", ErrInvalidPort, s, err)
		}
		if !r.f.has(p.Addr()) {
			continue // a range of the other family never matches this table's traffic
		}
		rules = append(rules, newRule(r.f).saddrIn(p).gotoChain(ext).build())
	}
	rules = append(rules, newRule(r.f).drop().build())
	r.o.chains[name] = rules
	return name, nil
}

// setChain returns the chain that picks a backend of the named set, building it once.
func (r *renderer) setChain(scope v1.EndpointScope) (string, error) {
	kind, set := kindCluster, r.p.Cluster
	if scope == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL {
		kind, set = kindLocal, r.p.Local
	}
	if set == nil {
		return "", fmt.Errorf("%w: a policy names the %s set, which the port lacks", ErrInvalidPort, kind)
	}
	name, err := r.name(kind)
	if err != nil {
		return "", err
	}
	if _, done := r.o.chains[name]; done {
		return name, nil
	}
	bs, err := r.backends(set)
	if err != nil {
		return "", err
	}
	// What a new connection meets when no backend takes it: DROP sets drop; everything else is
	// refused, which is also what a FORWARD set means once its last backend is gone.
	fallback := newRule(r.f).setMark(r.cfg.rejectBit).build()
	if set.Action == v1.TrafficAction_TRAFFIC_ACTION_DROP {
		fallback = newRule(r.f).drop().build()
		bs = nil
	} else if set.Action != v1.TrafficAction_TRAFFIC_ACTION_FORWARD {
		bs = nil
	}
	if len(slots(bs)) > 0 {
		r.o.forwards = true
	}
	var rules []rule
	if r.p.Service.SessionAffinity != nil {
		if rules, err = r.affinityRules(kind, bs); err != nil {
			return "", err
		}
	} else {
		id, err := r.cfg.setID(name)
		if err != nil {
			return "", err
		}
		r.o.ep[id] = endpointElems(r.f, id, bs)
		rules = append(rules, newRule(r.f).dnat(r.proto, id).build())
	}
	rules = append(rules, fallback)
	r.o.chains[name] = rules
	return name, nil
}

// affinityRules send a client back to the backend it was sent to before, else pick one and record
// it. Each backend has a chain that records the client in the backend's own timed set and DNATs
// to it, and a rule here sends the clients in that set to that chain. A backend that leaves takes
// its chain and set with it: its clients choose again, every other client keeps its backend.
func (r *renderer) affinityRules(kind string, bs []backend) ([]rule, error) {
	if len(slots(bs)) == 0 {
		return nil, nil
	}
	timeout := affinityTimeout(r.p.Service)
	var rules []rule
	chains := make([]string, len(bs))
	for i, be := range bs {
		tag := backendTag(r.f, be)
		name, err := r.name(kindBackend + kind + tag)
		if err != nil {
			return nil, err
		}
		chains[i] = name
		if _, dup := r.o.chains[name]; dup {
			continue // the same backend listed twice: one chain and set serve both
		}
		aff, err := r.name(kindAffinity + kind + tag)
		if err != nil {
			return nil, err
		}
		r.o.sets[aff] = affinitySet(r.f, aff)
		r.o.chains[name] = []rule{newRule(r.f).dnatRecorded(r.proto, be, aff, timeout).build()}
		// Going through the backend's chain refreshes the entry, as kube-proxy does: the
		// timeout counts from the client's last new connection.
		rules = append(rules, newRule(r.f).addrInSet("saddr", aff).gotoChain(name).build())
	}
	return append(rules, newRule(r.f).numgenVmap(bs, chains).build()), nil
}

func affinityTimeout(sp *v1.ServicePort) time.Duration {
	if sp.SessionAffinity == nil || sp.SessionAffinity.TimeoutSeconds == 0 {
		return defaultAffinityTimeout
	}
	return time.Duration(sp.SessionAffinity.TimeoutSeconds) * time.Second
}

func (r *renderer) backends(set *v1.EndpointSet) ([]backend, error) {
	bs := make([]backend, 0, len(set.Backends))
	for _, b := range set.Backends {
		a, err := netip.ParseAddr(b.Address)
		if err != nil || !r.f.has(a) || b.Port == 0 || b.Port > 65535 {
			return nil, fmt.Errorf("%w: backend %s port %d", ErrInvalidPort, b.Address, b.Port)
		}
		a = a.Unmap()
		bs = append(bs, backend{addr: a, port: b.Port, weight: b.Weight})
		r.o.hairpin = append(r.o.hairpin, a)
	}
	r.o.backends = append(r.o.backends, bs...)
	return bs, nil
}
