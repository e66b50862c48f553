package netlab

import (
	"fmt"
	"testing"
)

// The lab topology (the same as e2e/nft's): a fabric namespace with a bridge (192.168.77.0/24)
// where the brains run; node namespaces on it, each with a pod bridge (10.244.<i>.0/24) and
// pods; an outside client that routes LBIP to node 1, as an upstream router would. Pod CIDRs are
// routed between nodes over the fabric (host-gw style).
const (
	// FabricIP is the fabric's first address: every node's default gateway, and the first brain's.
	FabricIP = "192.168.77.1"
	// ClientIP is the outside client's address on the fabric.
	ClientIP = "192.168.77.100"
	// LBIP is a load-balancer address the client routes to node 1.
	LBIP = "203.0.113.10"
	// PodPort is the port every pod serves TCP and UDP on.
	PodPort = 8080
)

// LabNodeIP is node i's address on the fabric (1-based).
func LabNodeIP(i int) string { return fmt.Sprintf("192.168.77.1%d", i) }

// LabPodIP is the address of pod k (0-based) of node i (1-based).
func LabPodIP(i, k int) string { return fmt.Sprintf("10.244.%d.1%d", i, k) }

// LabPodCIDR is node i's pod CIDR.
func LabPodCIDR(i int) string { return fmt.Sprintf("10.244.%d.0/24", i) }

// LabPodName is the name pod k of node i answers with.
func LabPodName(i, k int) string { return fmt.Sprintf("pod%d%c", i, 'a'+k) }

// LabOptions shape a lab.
type LabOptions struct {
	// Nodes and PodsPerNode default to 3 and 2.
	Nodes, PodsPerNode int
	// FabricIPs are more addresses of the fabric's bridge (/24), beside FabricIP: one per extra
	// process that must be told apart, such as a second brain replica.
	FabricIPs []string
}

// LabNode is one node of a lab.
type LabNode struct {
	NS   *NS
	Pods []*NS
}

// Lab is a fabric, its nodes with their pods, and an outside client; removed when the test ends.
type Lab struct {
	Fabric, Client *NS
	Nodes          []*LabNode // Nodes[0] is node 1
}

// NewLab builds the topology; every pod already serves on PodPort.
func NewLab(t testing.TB, o LabOptions) *Lab {
	t.Helper()
	Require(t)
	if o.Nodes == 0 {
		o.Nodes = 3
	}
	if o.PodsPerNode == 0 {
		o.PodsPerNode = 2
	}
	id := UniqueID()
	l := &Lab{Fabric: NewNS(t, "gk"+id+"f")}
	l.Fabric.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	for _, ip := range append([]string{FabricIP}, o.FabricIPs...) {
		l.Fabric.Run(t, "ip", "addr", "add", ip+"/24", "dev", "br0")
	}
	l.Fabric.Run(t, "ip", "link", "set", "br0", "up")
	for i := 1; i <= o.Nodes; i++ {
		l.Nodes = append(l.Nodes, l.addNode(t, id, i, o))
	}
	l.Client = NewNS(t, "gk"+id+"c")
	l.attach(t, l.Client, "vc", ClientIP)
	l.Client.Run(t, "ip", "route", "add", LBIP+"/32", "via", LabNodeIP(1))
	return l
}

// attach plugs ns into the fabric's bridge as eth0 with ip.
func (l *Lab) attach(t testing.TB, ns *NS, port, ip string) {
	l.Fabric.Run(t, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.Name)
	l.Fabric.Run(t, "ip", "link", "set", port, "master", "br0", "up")
	ns.Run(t, "ip", "addr", "add", ip+"/24", "dev", "eth0")
	ns.Run(t, "ip", "link", "set", "eth0", "up")
}

func (l *Lab) addNode(t testing.TB, id string, i int, o LabOptions) *LabNode {
	n := &LabNode{NS: NewNS(t, fmt.Sprintf("gk%sn%d", id, i))}
	l.attach(t, n.NS, fmt.Sprintf("vn%d", i), LabNodeIP(i))
	n.NS.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	// Like any real node, a default route: traffic to a ClusterIP must reach the forward hook
	// (where a service without endpoints is rejected) rather than fail routing.
	n.NS.Run(t, "ip", "route", "add", "default", "via", FabricIP)
	n.NS.Run(t, "ip", "link", "add", "cbr0", "type", "bridge")
	n.NS.Run(t, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "cbr0")
	n.NS.Run(t, "ip", "link", "set", "cbr0", "up")
	for k := range o.PodsPerNode {
		pod := NewNS(t, fmt.Sprintf("gk%sp%d%d", id, i, k))
		veth := fmt.Sprintf("veth%d", k)
		n.NS.Run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.Name)
		n.NS.Run(t, "ip", "link", "set", veth, "master", "cbr0", "up")
		// As the CNI bridge plugin does with hairpinMode: a pod's packet DNATed back to itself
		// is bridged out of the port it came in on.
		n.NS.Run(t, "ip", "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
		pod.Run(t, "ip", "addr", "add", LabPodIP(i, k)+"/24", "dev", "eth0")
		pod.Run(t, "ip", "link", "set", "eth0", "up")
		pod.Run(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i))
		pod.Serve(t, LabPodName(i, k), PodPort)
		n.Pods = append(n.Pods, pod)
	}
	for j := 1; j <= o.Nodes; j++ {
		if j != i {
			n.NS.Run(t, "ip", "route", "add", LabPodCIDR(j), "via", LabNodeIP(j))
		}
	}
	return n
}
