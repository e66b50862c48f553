package nftables

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Addresses of the lab: a node namespace routes between an outside client, a bridge of local pods
// and a "remote" namespace that stands for a pod on another node.
const (
	nodeIP    = "192.168.50.1"
	nodeIP6   = "fd00:50::1"
	clientIP  = "192.168.50.2"
	remoteGW  = "10.244.2.1"
	remotePod = "10.244.2.11"
	podGW     = "10.244.1.1"
	podPort   = 8080
)

func podIP(i int) string  { return fmt.Sprintf("10.244.1.1%d", i) }
func podIP6(i int) string { return fmt.Sprintf("fd00:244:1::1%d", i) }

type lab struct {
	node, client, remote *netlab.NS
	pods                 []*netlab.NS // pods[0] is pod1
	info                 dataplane.Node
}

// newLab builds the namespaces and starts a server (TCP and UDP on podPort) in every pod and in
// the remote namespace. Servers are named pod1, pod2, ..., remote.
func newLab(t testing.TB, pods int) *lab {
	t.Helper()
	netlab.Require(t)
	id := "gn" + netlab.UniqueID()
	l := &lab{
		node: netlab.NewNS(t, id+"-node"), client: netlab.NewNS(t, id+"-client"), remote: netlab.NewNS(t, id+"-remote"),
		info: dataplane.Node{
			Name:      "node1",
			Addresses: []netip.Addr{netip.MustParseAddr(nodeIP), netip.MustParseAddr(nodeIP6), netip.MustParseAddr(remoteGW)},
			// The remote-facing address is excluded from NodePorts, exercising the filter.
			NodePortAddresses: []netip.Prefix{netip.MustParsePrefix("192.168.50.0/24"), netip.MustParsePrefix("fd00:50::/64")},
			PodCIDRs:          []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24"), netip.MustParsePrefix("fd00:244:1::/64")},
		},
	}
	n := l.node.Name
	// Pods share a bridge, as with bridge CNI: like Kubernetes there, the lab needs br_netfilter
	// so that a reply from a pod to a pod on the same bridge meets conntrack and is un-NATed.
	_, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables")
	testenv.Require(t, err == nil, "br_netfilter (net.bridge.bridge-nf-call-iptables) is not available")
	// Written from inside the namespace (no sysctl binary needed): these settings are per netns.
	if err := l.node.Do(func() error {
		return errors.Join(os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644),
			os.WriteFile("/proc/sys/net/ipv6/conf/all/forwarding", []byte("1"), 0o644),
			os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-iptables", []byte("1"), 0o644),
			os.WriteFile("/proc/sys/net/bridge/bridge-nf-call-ip6tables", []byte("1"), 0o644))
	}); err != nil {
		t.Fatalf("enable forwarding and br_netfilter: %v", err)
	}
	netlab.Run(t, "ip", "-n", n, "link", "add", "br0", "type", "bridge")
	netlab.Run(t, "ip", "-n", n, "addr", "add", podGW+"/24", "dev", "br0")
	netlab.Run(t, "ip", "-n", n, "addr", "add", "fd00:244:1::1/64", "dev", "br0", "nodad")
	netlab.Run(t, "ip", "-n", n, "link", "set", "br0", "up")
	l.link(t, "ext0", l.client, nodeIP+"/24", nodeIP6+"/64", clientIP+"/24", "fd00:50::2/64")
	// The client is the node's upstream router, as in a real network: the node has a default
	// route (so traffic to unknown service IPs reaches the filter chains instead of failing
	// routing), and the client routes service ranges to the node.
	l.client.Run(t, "ip", "route", "add", "192.168.60.0/24", "via", nodeIP)
	l.client.Run(t, "ip", "route", "add", "10.96.0.0/12", "via", nodeIP)
	l.client.Run(t, "ip", "-6", "route", "add", "fd00:96::/64", "via", nodeIP6)
	l.node.Run(t, "ip", "route", "add", "default", "via", clientIP)
	l.node.Run(t, "ip", "-6", "route", "add", "default", "via", "fd00:50::2")
	l.link(t, "rmt0", l.remote, remoteGW+"/24", "", remotePod+"/24", "")
	l.remote.Run(t, "ip", "route", "add", "default", "via", remoteGW)
	l.remote.Serve(t, "remote", podPort)
	for i := 1; i <= pods; i++ {
		l.addPod(t, id, i)
	}
	l.warmNeighbours(t)
	return l
}

// addPod adds pod i on the node's bridge, serving on podPort.
func (l *lab) addPod(t testing.TB, id string, i int) {
	n := l.node.Name
	p := netlab.NewNS(t, fmt.Sprintf("%s-pod%d", id, i))
	dev := fmt.Sprintf("vp%d", i)
	netlab.Run(t, "ip", "-n", n, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", p.Name)
	netlab.Run(t, "ip", "-n", n, "link", "set", dev, "master", "br0", "up")
	// As bridge CNI's hairpinMode: with br_netfilter, a pod's packet DNATed back to itself
	// is bridged out of the port it came in on.
	netlab.Run(t, "ip", "-n", n, "link", "set", dev, "type", "bridge_slave", "hairpin", "on")
	netlab.Run(t, "ip", "-n", p.Name, "addr", "add", podIP(i)+"/24", "dev", "eth0")
	netlab.Run(t, "ip", "-n", p.Name, "addr", "add", podIP6(i)+"/64", "dev", "eth0", "nodad")
	netlab.Run(t, "ip", "-n", p.Name, "link", "set", "eth0", "up")
	netlab.Run(t, "ip", "-n", p.Name, "route", "add", "default", "via", podGW)
	netlab.Run(t, "ip", "-n", p.Name, "-6", "route", "add", "default", "via", "fd00:244:1::1")
	p.Serve(t, fmt.Sprintf("pod%d", i), podPort)
	l.pods = append(l.pods, p)
}

// warmNeighbours resolves the node's neighbours first. With br_netfilter, a packet DNATed to a
// pod on the same bridge is bridged at once, and over IPv6 it is lost if the pod's address is
// not resolved yet; CNI plugins warm this up the same way (gratuitous ARP, unsolicited NA).
func (l *lab) warmNeighbours(t testing.TB) {
	for i := range l.pods {
		for _, a := range []string{podIP(i + 1), podIP6(i + 1)} {
			if _, err := l.node.AskUDP(hostPort(a, podPort)); err != nil {
				t.Fatalf("warm up the neighbour %s: %v", a, err)
			}
		}
	}
}

// link joins the node to peer with a veth; empty addresses are skipped.
func (l *lab) link(t testing.TB, dev string, peer *netlab.NS, nodeV4, nodeV6, peerV4, peerV6 string) {
	t.Helper()
	n := l.node.Name
	netlab.Run(t, "ip", "-n", n, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", peer.Name)
	for _, a := range []struct{ ns, addr, dev string }{{n, nodeV4, dev}, {n, nodeV6, dev}, {peer.Name, peerV4, "eth0"}, {peer.Name, peerV6, "eth0"}} {
		if a.addr == "" {
			continue
		}
		args := []string{"ip", "-n", a.ns, "addr", "add", a.addr, "dev", a.dev}
		if strings.Contains(a.addr, ":") {
			args = append(args, "nodad")
		}
		netlab.Run(t, args...)
	}
	netlab.Run(t, "ip", "-n", n, "link", "set", dev, "up")
	netlab.Run(t, "ip", "-n", peer.Name, "link", "set", "eth0", "up")
}

// dataplane opens a backend inside the node namespace, closed when the test ends.
func (l *lab) dataplane(t testing.TB) *Dataplane {
	t.Helper()
	d, err := New(l.info, WithNetNS(l.node.FD()))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func apply(t testing.TB, d *Dataplane, ports ...dataplane.Port) {
	t.Helper()
	if errs := d.Apply(context.Background(), dataplane.Change{Upserts: ports}); len(errs) > 0 {
		t.Fatalf("Apply: %v", errs)
	}
}

// Port builders: a compact way to write the contract's resources in tests.

type portOpt func(*dataplane.Port)

func mkPort(base string, opts ...portOpt) dataplane.Port {
	p := dataplane.Port{Base: base, Service: &v1.ServicePort{Family: v1.IPFamily_IP_FAMILY_IPV4, Protocol: v1.Protocol_PROTOCOL_TCP,
		Internal: &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER}}}
	if strings.HasSuffix(base, "/v6") {
		p.Service.Family = v1.IPFamily_IP_FAMILY_IPV6
	}
	for _, o := range opts {
		o(&p)
	}
	return p
}

func udp() portOpt { return func(p *dataplane.Port) { p.Service.Protocol = v1.Protocol_PROTOCOL_UDP } }

func frontend(kind v1.FrontendKind, addr string, port uint32, ranges ...string) portOpt {
	return func(p *dataplane.Port) {
		p.Service.Frontends = append(p.Service.Frontends, &v1.Frontend{Kind: kind, Address: addr, Port: port, SourceRanges: ranges})
	}
}

func clusterIP(addr string, port uint32) portOpt {
	return frontend(v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP, addr, port)
}

func nodePort(port uint32) portOpt {
	return frontend(v1.FrontendKind_FRONTEND_KIND_NODE_PORT, "", port)
}

func internal(scope v1.EndpointScope) portOpt {
	return func(p *dataplane.Port) { p.Service.Internal = &v1.TrafficPolicy{Scope: scope} }
}

func external(scope v1.EndpointScope, masq bool) portOpt {
	return func(p *dataplane.Port) { p.Service.External = &v1.TrafficPolicy{Scope: scope, Masquerade: masq} }
}

func affinity(seconds uint32) portOpt {
	return func(p *dataplane.Port) { p.Service.SessionAffinity = &v1.SessionAffinity{TimeoutSeconds: seconds} }
}

func cluster(s *v1.EndpointSet) portOpt { return func(p *dataplane.Port) { p.Cluster = s } }
func local(s *v1.EndpointSet) portOpt   { return func(p *dataplane.Port) { p.Local = s } }

// fwd is a FORWARD set of "addr:port" backends.
func fwd(backends ...string) *v1.EndpointSet {
	s := &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_FORWARD}
	for _, b := range backends {
		ap := netip.MustParseAddrPort(b)
		s.Backends = append(s.Backends, &v1.Backend{Address: ap.Addr().String(), Port: uint32(ap.Port())})
	}
	return s
}

func dropSet() *v1.EndpointSet { return &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_DROP} }
func rejectSet() *v1.EndpointSet {
	return &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_REJECT}
}

func ep(addr string) string { return netip.AddrPortFrom(netip.MustParseAddr(addr), podPort).String() }

func hostPort(addr string, port int) string {
	return netip.AddrPortFrom(netip.MustParseAddr(addr), uint16(port)).String()
}

var _ = strconv.Itoa
