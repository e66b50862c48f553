package compute

import (
	"cmp"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

var seedFlag = flag.Uint64("compute.seed", 0, "seed of the random clusters (0: a fresh one); or $GANGLION_COMPUTE_SEED")

// testSeed returns the seed of this run's random clusters and logs how to replay it: a failure
// that needs its seed to reproduce is worth little without it.
func testSeed(t *testing.T) uint64 {
	seed := *seedFlag
	if s := os.Getenv("GANGLION_COMPUTE_SEED"); seed == 0 && s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("GANGLION_COMPUTE_SEED=%q: %v", s, err)
		}
		seed = v
	}
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay: GANGLION_COMPUTE_SEED=%d or -compute.seed=%d)", seed, seed, seed)
	return seed
}

// clusterGen makes random clusters that reach every rule of semantics.md: every service type and
// ExternalName, headless and other proxies' services, dual stack, externalIPs, load-balancer
// ingress of both modes and families, with and without node ports, both traffic policies, zone and
// node hints (on every ready endpoint or not, naming zones and nodes nobody has), every combination
// of ready/serving/terminating, one address in several slices, target ports that differ per slice,
// weights, and nodes that have endpoints but no Node object. Every pick is made over sorted keys so
// that a seed replays exactly.
type clusterGen struct {
	r     *rand.Rand
	nodes []string // node names endpoints and hints may use; not all are declared
	zones []string
	index map[model.ServiceKey]int // the number each service was made with
	hints map[int][2]int           // per service number: how its endpoints carry zone and node hints
}

func (g *clusterGen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }
func (g *clusterGen) one(in int) bool         { return g.r.IntN(in) == 0 }

// model makes a cluster of 4 to 40 nodes in 1 to 4 zones and 3 to 24 services.
func (g *clusterGen) model() *naiveModel {
	m := &naiveModel{
		services: map[model.ServiceKey]*model.Service{},
		slices:   map[model.SliceKey]*model.EndpointSlice{},
		nodes:    map[string]*model.Node{},
	}
	if g.one(4) {
		m.opts.ProxyName = "ganglion"
	}
	g.zones = nil
	for i := range 1 + g.r.IntN(4) {
		g.zones = append(g.zones, fmt.Sprintf("zone-%d", i))
	}
	g.nodes = nil
	for i := range 4 + g.r.IntN(37) {
		name := fmt.Sprintf("node-%02d", i)
		g.nodes = append(g.nodes, name)
		if !g.one(8) {
			m.nodes[name] = g.node(name)
		}
	}
	g.index, g.hints = map[model.ServiceKey]int{}, map[int][2]int{}
	for i := range 3 + g.r.IntN(22) {
		g.addService(m, i)
	}
	return m
}

func (g *clusterGen) node(name string) *model.Node {
	zone := ""
	if !g.one(6) {
		zone = g.pick(g.zones)
	}
	return &model.Node{Name: name, Zone: zone, Ready: true}
}

// addService makes service number i and its slices. Services come in pairs of one name in two
// namespaces, so that a slice backing the wrong one shows.
func (g *clusterGen) addService(m *naiveModel, i int) *model.Service {
	s := g.service(i)
	g.index[s.Key()] = i
	g.hints[i] = hintModes[g.r.IntN(len(hintModes))]
	m.services[s.Key()] = s
	for _, fam := range []model.Family{model.IPv4, model.IPv6} {
		for k := range g.r.IntN(4) {
			sl := g.slice(s, i, fmt.Sprintf("%s-%d-%s-%d", s.Name, i, fam, k), fam)
			m.slices[sl.Key()] = sl
		}
	}
	return s
}

func (g *clusterGen) service(i int) *model.Service {
	s := &model.Service{
		Namespace: []string{"a", "b"}[i%2],
		Name:      fmt.Sprintf("s%d", i/2),
		Type:      []model.ServiceType{model.TypeClusterIP, model.TypeClusterIP, model.TypeNodePort, model.TypeLoadBalancer, model.TypeLoadBalancer}[g.r.IntN(5)],
	}
	v4 := netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})
	v6 := netip.AddrFrom16([16]byte{0xfd, 0, 0, 0x96, 14: byte(i >> 8), 15: byte(i)})
	switch g.r.IntN(4) {
	case 0:
		s.ClusterIPs = []netip.Addr{v6}
	case 1:
		s.ClusterIPs = []netip.Addr{v6, v4}
	default:
		s.ClusterIPs = []netip.Addr{v4}
	}
	g.notOurs(s)
	g.ports(s, i)
	g.externals(s, i)
	s.ExternalTrafficLocal = g.one(2)
	s.InternalTrafficLocal = g.one(4)
	if g.one(4) {
		s.AffinityTimeoutSeconds = []uint32{600, model.DefaultAffinityTimeoutSeconds}[g.r.IntN(2)]
	}
	if g.one(4) {
		s.Scheduler = "wrr"
	}
	if s.Type == model.TypeLoadBalancer && s.ExternalTrafficLocal {
		s.HealthCheckNodePort = uint16(32000 + i)
	}
	if g.one(6) {
		s.HealthCheck = &model.HealthCheck{Action: model.ProbeTCPSocket, PeriodSeconds: 2, FailureThreshold: 3}
	}
	return s
}

// notOurs makes about one service in six something kube-proxy leaves alone (or, for the
// service-proxy-name label, that we claim when started as "ganglion").
func (g *clusterGen) notOurs(s *model.Service) {
	switch g.r.IntN(24) {
	case 0:
		s.Type = model.TypeExternalName
	case 1:
		s.Headless, s.ClusterIPs = true, nil
	case 2:
		s.Labels = map[string]string{LabelHeadless: ""}
	case 3:
		s.Labels = map[string]string{LabelServiceProxyName: "ganglion"}
	case 4:
		s.Labels = map[string]string{LabelServiceProxyName: "other"}
	}
}

// ports gives one unnamed port or one or two named ones, node ports unless a load balancer
// opted out of them.
func (g *clusterGen) ports(s *model.Service, i int) {
	protocols := []model.Protocol{model.TCP, model.TCP, model.UDP, model.SCTP}
	names := []string{"http", "dns"}
	if g.one(3) {
		names = []string{""}
	} else if g.one(2) {
		names = names[:1]
	}
	withNodePorts := s.Type == model.TypeNodePort || (s.Type == model.TypeLoadBalancer && !g.one(4))
	for j, name := range names {
		p := model.ServicePort{Name: name, Protocol: protocols[g.r.IntN(len(protocols))], Port: uint16(80 + j)}
		if withNodePorts {
			p.NodePort = uint16(30000 + 2*i + j)
		}
		s.Ports = append(s.Ports, p)
	}
}

// externals gives externalIPs to some services, and load balancers their ingress (possibly none
// yet, of either family, in VIP or Proxy mode) and source ranges (not always masked).
func (g *clusterGen) externals(s *model.Service, i int) {
	addr := func(v4 [2]byte, v6 uint16) netip.Addr {
		if g.one(2) {
			return netip.AddrFrom4([4]byte{v4[0], v4[1], byte(i >> 8), byte(i)})
		}
		return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 4: byte(v6 >> 8), 5: byte(v6), 14: byte(i >> 8), 15: byte(i)})
	}
	if g.one(5) {
		for range 1 + g.r.IntN(2) {
			s.ExternalIPs = append(s.ExternalIPs, addr([2]byte{192, 0}, 2))
		}
	}
	if s.Type != model.TypeLoadBalancer {
		return
	}
	for range g.r.IntN(3) {
		mode := []model.IPMode{"", model.IPModeVIP, model.IPModeProxy}[g.r.IntN(3)]
		s.LoadBalancerIngress = append(s.LoadBalancerIngress, model.LoadBalancerIngress{IP: addr([2]byte{203, 0}, 3), IPMode: mode})
	}
	if g.one(3) {
		s.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("10.1.2.3/16"), netip.MustParsePrefix("2001:db8::/32")}[:1+g.r.IntN(2)]
	}
}

// slice makes one slice of s in fam. Its addresses come from a pool of twelve per service and
// family, so that slices overlap.
func (g *clusterGen) slice(s *model.Service, i int, name string, fam model.Family) *model.EndpointSlice {
	sl := &model.EndpointSlice{Namespace: s.Namespace, Name: name, Service: s.Name, Family: fam}
	targetBase := uint16(8080)
	if g.one(4) {
		targetBase = 9080 // a rolling update that renamed the target ports
	}
	for j, p := range s.Ports {
		if g.one(10) {
			continue
		}
		ep := model.EndpointPort{Name: p.Name, Protocol: p.Protocol, Port: targetBase + uint16(j)}
		if g.one(15) {
			ep.Protocol = model.UDP
			if p.Protocol == model.UDP {
				ep.Protocol = model.TCP
			}
		}
		sl.Ports = append(sl.Ports, ep)
	}
	for range g.r.IntN(9) {
		sl.Endpoints = append(sl.Endpoints, g.endpoint(i, fam, g.hints[i]))
	}
	return sl
}

// endpointConditions lists ready/serving/terminating, the consistent ones more often.
var endpointConditions = [][3]bool{
	{true, true, false}, {true, true, false}, {true, true, false}, {true, true, false},
	{false, false, false}, {false, true, true}, {false, true, true}, {false, false, true},
	{true, true, true}, {true, false, false}, {false, true, false}, {true, false, true},
}

// hintModes are the ways a service's endpoints carry {zone, node} hints: 0 none, 1 on every
// endpoint, 2 on most. Topology applies only when every ready endpoint has hints, so "most" checks
// that they are then ignored, and hints of both kinds check that a node's own wins over its zone's.
var hintModes = [][2]int{{0, 0}, {0, 0}, {1, 0}, {2, 0}, {1, 1}, {1, 1}, {1, 2}, {2, 1}, {0, 1}}

func (g *clusterGen) endpoint(i int, fam model.Family, hints [2]int) model.Endpoint {
	zoneHints, nodeHints := hints[0], hints[1]
	host := byte(1 + g.r.IntN(12))
	e := model.Endpoint{Address: netip.AddrFrom4([4]byte{10, byte(1 + i>>8), byte(i), host})}
	if fam == model.IPv6 {
		e.Address = netip.AddrFrom16([16]byte{0xfd, 0, 0, 1, 6: byte(i >> 8), 7: byte(i), 15: host})
	}
	c := endpointConditions[g.r.IntN(len(endpointConditions))]
	e.Ready, e.Serving, e.Terminating = c[0], c[1], c[2]
	if !g.one(15) {
		e.NodeName = g.pick(g.nodes)
	}
	if zoneHints == 1 || (zoneHints == 2 && !g.one(5)) {
		e.ForZones = g.hintsFrom(append(slices.Clone(g.zones), "zone-nobody"))
	}
	if nodeHints == 1 || (nodeHints == 2 && !g.one(5)) {
		e.ForNodes = g.hintsFrom(append(slices.Clone(g.nodes), "node-nobody"))
	}
	if g.one(5) {
		e.Weight = uint32(g.r.IntN(5))
	}
	return e
}

// hintsFrom names one or two of from, and rarely the empty name, which must never match.
func (g *clusterGen) hintsFrom(from []string) []string {
	out := []string{g.pick(from)}
	if g.one(3) {
		out = append(out, g.pick(from))
	}
	if g.one(25) {
		out[0] = ""
	}
	return out
}

// observers are the nodes whose state is checked: every name endpoints may use, declared or not,
// and an agent the model never mentions.
func (g *clusterGen) observers() []string { return append(slices.Clone(g.nodes), "node-unknown") }

// load hands the model to an engine in a random order: the result must not depend on it.
func (g *clusterGen) load(m *naiveModel, e *Engine) {
	var ops []func()
	for _, name := range slices.Sorted(maps.Keys(m.nodes)) {
		ops = append(ops, func() { e.SetNode(m.nodes[name]) })
	}
	for _, k := range sortedKeys(m.services) {
		ops = append(ops, func() { e.SetService(m.services[k]) })
	}
	for _, k := range sortedKeys(m.slices) {
		ops = append(ops, func() { e.SetSlice(m.slices[k]) })
	}
	g.r.Shuffle(len(ops), func(i, j int) { ops[i], ops[j] = ops[j], ops[i] })
	for _, op := range ops {
		op()
	}
}

// nsName is a key made of a namespace and a name: model.ServiceKey and model.SliceKey.
type nsName interface {
	~struct{ Namespace, Name string }
}

// sortedKeys sorts the keys of a map keyed by namespace and name.
func sortedKeys[K nsName, V any](m map[K]V) []K {
	keys := slices.Collect(maps.Keys(m))
	slices.SortFunc(keys, func(a, b K) int {
		x, y := struct{ Namespace, Name string }(a), struct{ Namespace, Name string }(b)
		return cmp.Or(cmp.Compare(x.Namespace, y.Namespace), cmp.Compare(x.Name, y.Name))
	})
	return keys
}
