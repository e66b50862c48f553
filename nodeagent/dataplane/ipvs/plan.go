package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// ErrInvalidPort marks a port the backend cannot program as given.
var ErrInvalidPort = errors.New("invalid port")

// Schedulers are the IPVS schedulers a port may name.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"}

// defaultAffinityTimeout is Kubernetes' default ClientIP affinity timeout (3 hours).
const defaultAffinityTimeout = 10800

// ipvsPersistent is IP_VS_SVC_F_PERSISTENT: the virtual server keeps a client on one real server.
const ipvsPersistent = 0x1

// vsKey identifies a virtual server.
type vsKey struct {
	Proto uint16
	Addr  netip.Addr
	Port  uint16
}

// String formats k the way errors and logs show it: tcp/10.96.0.1:80.
func (k vsKey) String() string {
	return fmt.Sprintf("%s/%s", dataplane.IPProtoName(uint8(k.Proto)), netip.AddrPortFrom(k.Addr, k.Port))
}

// vsSpec is a virtual server's own settings, without its real servers.
type vsSpec struct {
	Sched   string
	Flags   uint32
	Timeout uint32
	Netmask uint32
}

// vsPlan is one virtual server as a port wants it.
type vsPlan struct {
	Spec  vsSpec
	Reals map[netip.AddrPort]int
}

// verdict is what the nftables filter does with a new connection to a frontend: the verdict
// chain, and for LOAD_BALANCER frontends with source ranges (Restricted) the allowed ranges of
// the frontend's family (canonical, comma-separated; empty when none is) checked before it in a
// chain of the frontend's own.
type verdict struct {
	Chain      string
	Restricted bool
	Ranges     string
}

// The verdict chains of the nftables table; see nft.go for what each does.
const (
	chainForward        = "fwd-plain"
	chainForwardMasq    = "fwd-masq"
	chainForwardCluster = "fwd-clusterip"
	chainForwardLocal   = "fwd-local"
	chainDropExternal   = "drop-external"
	chainDrop           = "drop-all"
	chainReject         = "reject-all"
)

// portPlan is everything one port puts in the kernel.
type portPlan struct {
	Services  map[vsKey]*vsPlan
	Frontends map[vsKey]verdict
	// Addrs are the frontend addresses that go on our dummy device (every kind but NodePort).
	Addrs []netip.Addr
}

// planPort turns a port into virtual servers and verdicts. It is pure, so the semantics table in
// semantics.md is tested without a kernel.
func planPort(p dataplane.Port, n dataplane.Node, defaultSched string) (*portPlan, error) {
	sp := p.Service
	if sp == nil {
		return nil, fmt.Errorf("%w: no service", ErrInvalidPort)
	}
	v6 := sp.GetFamily() == v1.IPFamily_IP_FAMILY_IPV6
	proto, err := protoNumber(sp.GetProtocol())
	if err != nil {
		return nil, err
	}
	spec, err := specFor(sp, v6, defaultSched)
	if err != nil {
		return nil, err
	}
	plan := &portPlan{Services: map[vsKey]*vsPlan{}, Frontends: map[vsKey]verdict{}}
	for _, fe := range sp.GetFrontends() {
		internal := fe.GetKind() == v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP
		v, reals, err := frontendVerdict(p, internal)
		if err != nil {
			return nil, err
		}
		if fe.GetKind() == v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER && len(fe.GetSourceRanges()) > 0 && v.Chain != chainReject {
			v.Restricted = true
			if v.Ranges, err = canonicalRanges(fe.GetSourceRanges(), v6); err != nil {
				return nil, err
			}
		}
		addrs, onDummy, err := frontendAddrs(fe, n, v6)
		if err != nil {
			return nil, err
		}
		if fe.GetPort() == 0 || fe.GetPort() > 65535 {
			return nil, fmt.Errorf("%w: frontend port %d", ErrInvalidPort, fe.GetPort())
		}
		for _, a := range addrs {
			k := vsKey{Proto: proto, Addr: a, Port: uint16(fe.GetPort())}
			plan.Services[k] = &vsPlan{Spec: spec, Reals: reals}
			plan.Frontends[k] = v
			if onDummy && !slices.Contains(plan.Addrs, a) {
				plan.Addrs = append(plan.Addrs, a)
			}
		}
	}
	return plan, nil
}

// specFor derives the scheduler and persistence every virtual server of the port shares.
func specFor(sp *v1.ServicePort, v6 bool, defaultSched string) (vsSpec, error) {
	// IPVS wants a full host mask on every virtual server (an IPv6 one of 0 is invalid); it only
	// matters for persistence, where affinity is per client address.
	s := vsSpec{Sched: sp.GetScheduler(), Netmask: 0xffffffff}
	if v6 {
		s.Netmask = 128
	}
	if s.Sched == "" {
		s.Sched = defaultSched
	}
	if !slices.Contains(Schedulers, s.Sched) {
		return s, fmt.Errorf("%w: unknown scheduler %q", ErrInvalidPort, s.Sched)
	}
	if sa := sp.GetSessionAffinity(); sa != nil {
		s.Flags |= ipvsPersistent
		s.Timeout = sa.GetTimeoutSeconds()
		if s.Timeout == 0 {
			s.Timeout = defaultAffinityTimeout
		}
	}
	return s, nil
}

// frontendVerdict applies the outcome table of semantics.md to one kind of frontend.
func frontendVerdict(p dataplane.Port, internal bool) (verdict, map[netip.AddrPort]int, error) {
	pol := p.Service.GetExternal()
	if internal {
		pol = p.Service.GetInternal()
	}
	set := p.Cluster
	if pol.GetScope() == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL {
		set = p.Local
	}
	action := set.GetAction()
	reals, err := realServers(set)
	if err != nil {
		return verdict{}, nil, err
	}
	if action == v1.TrafficAction_TRAFFIC_ACTION_FORWARD && len(reals) == 0 {
		// A forward with nothing to forward to is a port with no usable endpoint.
		action = v1.TrafficAction_TRAFFIC_ACTION_REJECT
	}
	switch action {
	case v1.TrafficAction_TRAFFIC_ACTION_FORWARD:
		switch {
		case pol.GetMasquerade():
			return verdict{Chain: chainForwardMasq}, reals, nil
		case internal:
			return verdict{Chain: chainForwardCluster}, reals, nil
		default:
			return verdict{Chain: chainForwardLocal}, reals, nil
		}
	case v1.TrafficAction_TRAFFIC_ACTION_DROP:
		if internal {
			return verdict{Chain: chainDrop}, nil, nil
		}
		// External traffic is dropped by nftables before IPVS sees it; what still reaches the
		// virtual server comes from this node or its pods, which may short-circuit to the
		// cluster set.
		short, err := realServers(p.Cluster)
		if err != nil || p.Cluster.GetAction() != v1.TrafficAction_TRAFFIC_ACTION_FORWARD {
			short = nil
		}
		return verdict{Chain: chainDropExternal}, short, err
	default:
		// REJECT, and anything unset: a port without a usable endpoint refuses connections.
		return verdict{Chain: chainReject}, nil, nil
	}
}

func realServers(set *v1.EndpointSet) (map[netip.AddrPort]int, error) {
	reals := map[netip.AddrPort]int{}
	for _, b := range set.GetBackends() {
		a, err := netip.ParseAddr(b.GetAddress())
		if err != nil || b.GetPort() == 0 || b.GetPort() > 65535 {
			return nil, fmt.Errorf("%w: backend %s:%d", ErrInvalidPort, b.GetAddress(), b.GetPort())
		}
		w := int(b.GetWeight())
		if w <= 0 {
			w = 1
		}
		reals[netip.AddrPortFrom(a.Unmap(), uint16(b.GetPort()))] = w
	}
	return reals, nil
}

// frontendAddrs resolves a frontend to addresses: its own, or the node's for NodePort.
func frontendAddrs(fe *v1.Frontend, n dataplane.Node, v6 bool) ([]netip.Addr, bool, error) {
	if fe.GetKind() == v1.FrontendKind_FRONTEND_KIND_NODE_PORT {
		return n.NodePortAddrs(v6), false, nil
	}
	a, err := netip.ParseAddr(fe.GetAddress())
	if err != nil {
		return nil, false, fmt.Errorf("%w: frontend address %q", ErrInvalidPort, fe.GetAddress())
	}
	a = a.Unmap()
	if a.Is6() != v6 {
		return nil, false, fmt.Errorf("%w: frontend %s is not of the port's family", ErrInvalidPort, a)
	}
	// An externalIP that is the node's own address is already local: putting it on our device
	// would move it, and rejecting its unknown ports would cut the node off (ssh, kubelet).
	if slices.Contains(n.Addresses, a) {
		return []netip.Addr{a}, false, nil
	}
	return []netip.Addr{a}, true, nil
}

func canonicalRanges(ranges []string, v6 bool) (string, error) {
	out := make([]string, 0, len(ranges))
	for _, r := range ranges {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			return "", fmt.Errorf("%w: source range %q", ErrInvalidPort, r)
		}
		if p.Addr().Is6() != v6 {
			continue
		}
		out = append(out, p.Masked().String())
	}
	slices.Sort(out)
	return strings.Join(slices.Compact(out), ","), nil
}

func protoNumber(p v1.Protocol) (uint16, error) {
	if num, _, ok := dataplane.IPProto(p); ok {
		return uint16(num), nil
	}
	return 0, fmt.Errorf("%w: protocol %v", ErrInvalidPort, p)
}
