package nftables

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

const (
	scopeCluster = v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER
	scopeLocal   = v1.EndpointScope_ENDPOINT_SCOPE_LOCAL
	kindLB       = v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER
	kindEIP      = v1.FrontendKind_FRONTEND_KIND_EXTERNAL_IP
)

func mustAsk(t *testing.T, n *netlab.NS, addr string) string {
	t.Helper()
	g, err := n.AskTCP(addr)
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", n.Name, addr, err)
	}
	return g
}

func TestClusterIPFromPod(t *testing.T) {
	l := newLab(t, 3)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/web:http/v4", clusterIP("10.96.0.10", 80), cluster(fwd(ep(podIP(1)), ep(podIP(2))))))
	seen := map[string]bool{}
	for range 40 {
		g := mustAsk(t, l.pods[2], "10.96.0.10:80")
		seen[netlab.Backend(g)] = true
		if src := netlab.Source(g); src != podIP(3) {
			t.Fatalf("backend saw source %s, want the pod's own %s (no masquerade inside the cluster)", src, podIP(3))
		}
	}
	if !seen["pod1"] || !seen["pod2"] || len(seen) != 2 {
		t.Fatalf("backends reached: %v, want pod1 and pod2", seen)
	}
}

func TestNodePortETPClusterMasqueradesClient(t *testing.T) {
	l := newLab(t, 1)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/np:http/v4", clusterIP("10.96.0.11", 80), nodePort(30080),
		external(scopeCluster, true), cluster(fwd(ep(remotePod)))))
	g := mustAsk(t, l.client, hostPort(nodeIP, 30080))
	if netlab.Backend(g) != "remote" || netlab.Source(g) != remoteGW {
		t.Fatalf("greeting %q: want the remote backend seeing the node's address %s", g, remoteGW)
	}
}

func TestNodePortETPLocalPreservesClientIP(t *testing.T) {
	l := newLab(t, 1)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/np:http/v4", clusterIP("10.96.0.11", 80), nodePort(30081),
		external(scopeLocal, false), cluster(fwd(ep(podIP(1)), ep(remotePod))), local(fwd(ep(podIP(1))))))
	for range 10 {
		g := mustAsk(t, l.client, hostPort(nodeIP, 30081))
		if netlab.Backend(g) != "pod1" || netlab.Source(g) != clientIP {
			t.Fatalf("greeting %q: want the local pod1 seeing the client's own %s", g, clientIP)
		}
	}
}

func TestNodePortETPLocalWithoutLocalEndpointsDrops(t *testing.T) {
	l := newLab(t, 1)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/np:http/v4", clusterIP("10.96.0.11", 80), nodePort(30082),
		external(scopeLocal, false), cluster(fwd(ep(remotePod))), local(dropSet())))
	if _, err := l.client.AskTCP(hostPort(nodeIP, 30082)); !netlab.IsTimeout(err) {
		t.Fatalf("from outside: got %v, want the SYN dropped (timeout)", err)
	}
	// The short-circuit: a pod on this node still reaches the cluster set through the NodePort.
	if g := mustAsk(t, l.pods[0], hostPort(nodeIP, 30082)); netlab.Backend(g) != "remote" {
		t.Fatalf("from a local pod: greeting %q, want the cluster backend", g)
	}
	// And the host itself, masqueraded so the reply comes back to it.
	if g := mustAsk(t, l.node, hostPort(nodeIP, 30082)); netlab.Backend(g) != "remote" || netlab.Source(g) != remoteGW {
		t.Fatalf("from the host: greeting %q, want the cluster backend seeing %s", g, remoteGW)
	}
}

func TestNodePortAddressesFilter(t *testing.T) {
	l := newLab(t, 1)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/np:http/v4", clusterIP("10.96.0.11", 80), nodePort(30083),
		external(scopeCluster, true), cluster(fwd(ep(podIP(1))))))
	// remoteGW is a node address outside NodePortAddresses: nothing listens there.
	if _, err := l.remote.AskTCP(hostPort(remoteGW, 30083)); !netlab.IsRefused(err) {
		t.Fatalf("NodePort on a filtered address: got %v, want connection refused by the host", err)
	}
}

func TestLoadBalancerAndExternalIP(t *testing.T) {
	l := newLab(t, 2)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/lb:http/v4", clusterIP("10.96.0.12", 80),
		frontend(kindLB, "192.168.60.10", 80, "192.168.50.0/24"),
		frontend(kindLB, "192.168.60.11", 80, "10.0.0.0/8"),
		frontend(kindEIP, "192.168.60.20", 80),
		external(scopeCluster, true), cluster(fwd(ep(podIP(2))))))
	for _, vip := range []string{"192.168.60.10:80", "192.168.60.20:80"} {
		if g := mustAsk(t, l.client, vip); netlab.Backend(g) != "pod2" || netlab.Source(g) != podGW {
			t.Fatalf("%s: greeting %q, want pod2 seeing the masqueraded %s", vip, g, podGW)
		}
	}
	if _, err := l.client.AskTCP("192.168.60.11:80"); !netlab.IsTimeout(err) {
		t.Fatalf("client outside the LB source ranges: got %v, want dropped", err)
	}
}

func TestInternalTrafficPolicyLocal(t *testing.T) {
	l := newLab(t, 3)
	d := l.dataplane(t)
	apply(t, d,
		mkPort("default/itp:http/v4", clusterIP("10.96.0.13", 80), internal(scopeLocal), local(fwd(ep(podIP(2))))),
		mkPort("default/itp-empty:http/v4", clusterIP("10.96.0.14", 80), internal(scopeLocal), local(dropSet())))
	for range 5 {
		if g := mustAsk(t, l.pods[2], "10.96.0.13:80"); netlab.Backend(g) != "pod2" {
			t.Fatalf("greeting %q, want the local endpoint pod2", g)
		}
	}
	if _, err := l.pods[2].AskTCP("10.96.0.14:80"); !netlab.IsTimeout(err) {
		t.Fatalf("ITP Local without local endpoints: got %v, want dropped", err)
	}
}

func TestNoEndpointsRefused(t *testing.T) {
	l := newLab(t, 1)
	d := l.dataplane(t)
	apply(t, d,
		mkPort("default/none:http/v4", clusterIP("10.96.0.15", 80), nodePort(30084), external(scopeCluster, true), cluster(rejectSet())),
		mkPort("default/web:http/v4", clusterIP("10.96.0.10", 80), cluster(fwd(ep(podIP(1))))))
	cases := []struct {
		from *netlab.NS
		addr string
	}{
		{l.pods[0], "10.96.0.15:80"},
		{l.client, hostPort(nodeIP, 30084)},
		{l.pods[0], "10.96.0.10:81"}, // an unknown port of a ClusterIP
		{l.node, "10.96.0.15:80"},    // from the host itself
	}
	for _, c := range cases {
		if _, err := c.from.AskTCP(c.addr); !netlab.IsRefused(err) {
			t.Errorf("%s from %s: got %v, want connection refused", c.addr, c.from.Name, err)
		}
		// A datagram the host itself sends is rejected on output: the send fails with EPERM.
		if _, err := c.from.AskUDP(c.addr); !netlab.IsRefused(err) && !(c.from == l.node && errors.Is(err, syscall.EPERM)) {
			t.Errorf("UDP %s from %s: got %v, want refused (ICMP port unreachable)", c.addr, c.from.Name, err)
		}
	}
}

func TestSessionAffinitySticks(t *testing.T) {
	l := newLab(t, 3)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/sticky:http/v4", clusterIP("10.96.0.16", 80), affinity(60),
		cluster(fwd(ep(podIP(1)), ep(podIP(2))))))
	first := netlab.Backend(mustAsk(t, l.pods[2], "10.96.0.16:80"))
	for range 20 {
		if b := netlab.Backend(mustAsk(t, l.pods[2], "10.96.0.16:80")); b != first {
			t.Fatalf("client moved from %s to %s despite ClientIP affinity", first, b)
		}
	}
	// Another client is chosen for independently, and sticks too.
	other := netlab.Backend(mustAsk(t, l.client, "10.96.0.16:80"))
	for range 5 {
		if b := netlab.Backend(mustAsk(t, l.client, "10.96.0.16:80")); b != other {
			t.Fatalf("second client moved from %s to %s", other, b)
		}
	}
}

// TestSessionAffinityOutlivesOtherBackends: when a backend leaves, only the clients stuck to it
// choose again; a client stuck to a backend that stays keeps it, across a restart too.
func TestSessionAffinityOutlivesOtherBackends(t *testing.T) {
	l := newLab(t, 3)
	d := l.dataplane(t)
	srcs := clientAddrs(t, l, 40)
	const vip = "10.96.0.16:80"
	sticky := func(backends ...string) dataplane.Port {
		return mkPort("default/sticky:http/v4", clusterIP("10.96.0.16", 80), affinity(60), cluster(fwd(backends...)))
	}
	stuck := map[string]string{} // client address → backend
	sticks := func(when, src string) {
		t.Helper()
		for range 3 {
			if b := netlab.Backend(askFrom(t, l.client, src, vip)); b != stuck[src] {
				t.Fatalf("%s: client %s moved from %s to %s", when, src, stuck[src], b)
			}
		}
	}
	// The first clients cannot choose pod1; the later ones can.
	apply(t, d, sticky(ep(podIP(2)), ep(podIP(3))))
	for _, src := range srcs[:8] {
		stuck[src] = netlab.Backend(askFrom(t, l.client, src, vip))
	}
	apply(t, d, sticky(ep(podIP(1)), ep(podIP(2)), ep(podIP(3))))
	var movers, stayers []string
	for _, src := range srcs {
		if stuck[src] == "" {
			stuck[src] = netlab.Backend(askFrom(t, l.client, src, vip))
		}
		sticks("after pod1 joined", src)
		if stuck[src] == "pod1" {
			movers = append(movers, src)
		} else {
			stayers = append(stayers, src)
		}
	}
	if len(movers) == 0 {
		t.Fatalf("no client of %d chose pod1 out of three backends: %v", len(srcs), stuck)
	}

	d = restartAdopts(t, l, d, sticky(ep(podIP(1)), ep(podIP(2)), ep(podIP(3))))
	for _, src := range srcs {
		sticks("after a restart and Reconcile", src)
	}

	apply(t, d, sticky(ep(podIP(2)), ep(podIP(3))))
	for _, src := range stayers {
		sticks("after pod1 left", src)
	}
	for _, src := range movers {
		b := netlab.Backend(askFrom(t, l.client, src, vip))
		if b != "pod2" && b != "pod3" {
			t.Fatalf("client %s of pod1, after pod1 left: reached %q, want pod2 or pod3", src, b)
		}
		stuck[src] = b
		sticks("after choosing again", src)
	}
	if out := l.node.Run(t, "nft", "list", "table", "ip", TableName); strings.Contains(out, "0af4010b") || strings.Contains(out, podIP(1)) {
		t.Fatalf("pod1 left, but its chain or affinity set did not:\n%s", out)
	}
}

// clientAddrs gives the lab's client n more addresses: with many, some are sure to be stuck to
// each backend of a port with affinity.
func clientAddrs(t *testing.T, l *lab, n int) []string {
	var srcs []string
	for i := range n {
		srcs = append(srcs, fmt.Sprintf("192.168.50.%d", 100+i))
		l.client.Run(t, "ip", "addr", "add", srcs[i]+"/24", "dev", "eth0")
	}
	return srcs
}

// restartAdopts closes d and opens a new instance, which adopts the table, affinity sets
// included: re-applying p sends nothing, and Reconcile keeps it.
func restartAdopts(t *testing.T, l *lab, d *Dataplane, p dataplane.Port) *Dataplane {
	t.Helper()
	d.Close()
	d = l.dataplane(t)
	apply(t, d, p)
	if d.lastMessages != 0 {
		t.Fatalf("re-applying %s after a restart sent %d messages, want none", p.Base, d.lastMessages)
	}
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	return d
}

// askFrom connects from the namespace with source address src and returns the greeting.
func askFrom(t *testing.T, n *netlab.NS, src, addr string) string {
	t.Helper()
	var line string
	err := n.Do(func() error {
		dl := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: netlab.DialTimeout}
		c, err := dl.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(netlab.DialTimeout))
		line, err = bufio.NewReader(c).ReadString('\n')
		return err
	})
	if err != nil {
		t.Fatalf("connect from %s (%s) to %s: %v", n.Name, src, addr, err)
	}
	return strings.TrimSpace(line)
}

func TestHairpin(t *testing.T) {
	l := newLab(t, 1)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/self:http/v4", clusterIP("10.96.0.17", 80), cluster(fwd(ep(podIP(1))))))
	g := mustAsk(t, l.pods[0], "10.96.0.17:80")
	if netlab.Backend(g) != "pod1" || netlab.Source(g) == podIP(1) {
		t.Fatalf("greeting %q: want pod1 reaching itself with a masqueraded source", g)
	}
}

func TestUDPClusterIPAndIPv6(t *testing.T) {
	l := newLab(t, 2)
	d := l.dataplane(t)
	apply(t, d,
		mkPort("default/dns:udp/v4", udp(), clusterIP("10.96.0.18", 53), cluster(fwd(ep(podIP(1))))),
		mkPort("default/web:http/v6", clusterIP("fd00:96::10", 80), cluster(fwd(hostPort(podIP6(1), podPort)))),
		mkPort("default/dns:udp/v6", udp(), clusterIP("fd00:96::10", 53), cluster(fwd(hostPort(podIP6(1), podPort)))),
		mkPort("default/np:http/v6", nodePort(30090), external(scopeCluster, true), cluster(fwd(hostPort(podIP6(2), podPort)))))
	if g, err := l.pods[1].AskUDP("10.96.0.18:53"); err != nil || netlab.Backend(g) != "pod1" {
		t.Fatalf("UDP over IPv4: %q %v", g, err)
	}
	if g := mustAsk(t, l.pods[1], "[fd00:96::10]:80"); netlab.Backend(g) != "pod1" || netlab.Source(g) != podIP6(2) {
		t.Fatalf("TCP over IPv6: greeting %q", g)
	}
	if g, err := l.pods[1].AskUDP("[fd00:96::10]:53"); err != nil || netlab.Backend(g) != "pod1" {
		t.Fatalf("UDP over IPv6: %q %v", g, err)
	}
	if g := mustAsk(t, l.client, "["+nodeIP6+"]:30090"); netlab.Backend(g) != "pod2" || netlab.Source(g) != "fd00:244:1::1" {
		t.Fatalf("IPv6 NodePort with ETP Cluster: greeting %q, want pod2 seeing the node's address", g)
	}
}
