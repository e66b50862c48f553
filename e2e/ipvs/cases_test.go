package ipvs

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/vm"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/ipvs"
)

func TestVMClusterIPSpreadsAcrossBackends(t *testing.T) {
	tp, d := guest(t)
	tcp := svc{name: "spread", clusterIP: "10.96.0.10", cluster: []string{"a", "b", "c", "r"}}
	udp := svc{name: "spread-udp", udp: true, clusterIP: "10.96.0.10", cluster: []string{"a", "b", "c", "r"}}
	applyAll(t, d, tp.port(tcp), tp.port(udp))

	client := tp.pods["client"]
	if seen := spread(t, client, "tcp", "10.96.0.10:80", 8); len(seen) != 4 {
		t.Errorf("TCP backends seen = %v, want all of a b c r", keys(seen))
	}
	if seen := spread(t, client, "udp", "10.96.0.10:80", 8); len(seen) < 2 {
		t.Errorf("UDP backends seen = %v, want several", keys(seen))
	}
	// A pod's traffic to a ClusterIP keeps its address.
	if _, src, err := client.request("tcp", "10.96.0.10:80"); err != nil || src != client.addr.String() {
		t.Errorf("pod request: source seen %q (err %v), want %s", src, err, client.addr)
	}
	// The node itself reaches the service too, masqueraded.
	c, err := net.DialTimeout("tcp", "10.96.0.10:80", 30*time.Second)
	if err != nil {
		t.Fatalf("host request: %v", err)
	}
	defer c.Close()
	if hc, err := newConn(c); err != nil {
		t.Errorf("host request: %v", err)
	} else if _, _, err := hc.ask(); err != nil {
		t.Errorf("host request: %v", err)
	}
}

func TestVMSchedulerChange(t *testing.T) {
	tp, d := guest(t)
	s := svc{name: "sched", clusterIP: "10.96.0.11", cluster: []string{"a", "b", "c"}}
	applyAll(t, d, tp.port(s))
	client := tp.pods["client"]
	if seen := spread(t, client, "tcp", "10.96.0.11:80", 6); len(seen) != 3 {
		t.Errorf("rr: backends seen = %v, want all three", keys(seen))
	}
	s.sched = "sh"
	applyAll(t, d, tp.port(s))
	out, _ := exec.Command("ipvsadm", "-Ln", "-t", "10.96.0.11:80").CombinedOutput()
	if !strings.Contains(string(out), " sh") {
		t.Errorf("scheduler not changed in the kernel:\n%s", out)
	}
	// Source hashing sends one client to one backend.
	if seen := spread(t, client, "tcp", "10.96.0.11:80", 6); len(seen) != 1 {
		t.Errorf("sh: backends seen = %v, want one", keys(seen))
	}
}

func TestVMSessionAffinity(t *testing.T) {
	tp, d := guest(t)
	s := svc{name: "affinity", clusterIP: "10.96.0.12", cluster: []string{"a", "b", "c"}, affinity: true}
	applyAll(t, d, tp.port(s))
	if seen := spread(t, tp.pods["client"], "tcp", "10.96.0.12:80", 6); len(seen) != 1 {
		t.Errorf("backends seen = %v, want one: the client is pinned", keys(seen))
	}
}

func TestVMExternalTrafficPolicy(t *testing.T) {
	tp, d := guest(t)
	local := svc{name: "etp-local", clusterIP: "10.96.0.13", nodePort: 30080, etpLocal: true,
		cluster: []string{"a", "r"}, local: []string{"a"}}
	cluster := svc{name: "etp-cluster", clusterIP: "10.96.0.14", nodePort: 30081, cluster: []string{"r"}}
	applyAll(t, d, tp.port(local), tp.port(cluster))
	ext := tp.pods["ext"]

	for range 4 {
		b, src, err := ext.request("tcp", nodeAddr+":30080")
		if err != nil {
			t.Fatalf("ETP Local request: %v", err)
		}
		if b != "a" || src != extAddr {
			t.Errorf("ETP Local: answered by %s seeing %s, want a seeing the real client %s", b, src, extAddr)
		}
	}
	if b, src, err := ext.request("tcp", nodeAddr+":30081"); err != nil || b != "r" || src == extAddr {
		t.Errorf("ETP Cluster: answered by %s seeing %s (err %v), want r seeing a node address", b, src, err)
	}

	// No local endpoint: external traffic is dropped (not refused, not sent elsewhere unmasqueraded),
	// while this node's pods still reach the cluster endpoints through the NodePort.
	local.local = nil
	local.cluster = []string{"r"}
	applyAll(t, d, tp.port(local))
	if _, err := ext.dial("tcp", nodeAddr+":30080", 2*time.Second); !netlab.IsTimeout(err) {
		t.Errorf("ETP Local with no local endpoint: dial error %v, want a timeout (dropped)", err)
	}
	if b, _, err := tp.pods["client"].request("tcp", nodeAddr+":30080"); err != nil || b != "r" {
		t.Errorf("short-circuit from a local pod: answered by %q (err %v), want r", b, err)
	}
}

func TestVMRejects(t *testing.T) {
	tp, d := guest(t)
	none := svc{name: "no-endpoints", clusterIP: "10.96.0.15", reject: true}
	ok := svc{name: "ok", clusterIP: "10.96.0.16", cluster: []string{"a"}}
	applyAll(t, d, tp.port(none), tp.port(ok))
	client := tp.pods["client"]
	if _, err := client.dial("tcp", "10.96.0.15:80", 30*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("service without endpoints: dial error %v, want connection refused", err)
	}
	if _, err := client.dial("tcp", "10.96.0.16:81", 30*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("unknown port on a service address: dial error %v, want connection refused", err)
	}
}

func TestVMGracefulTermination(t *testing.T) {
	tp, d := guest(t)
	s := svc{name: "drain", clusterIP: "10.96.0.17", cluster: []string{"a", "b"}}
	applyAll(t, d, tp.port(s))
	client := tp.pods["client"]
	c, err := client.dial("tcp", "10.96.0.17:80", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leaving, _, err := c.ask()
	if err != nil {
		t.Fatal(err)
	}
	staying := map[string]string{"a": "b", "b": "a"}[leaving]
	s.cluster = []string{staying}
	applyAll(t, d, tp.port(s))

	if b, _, err := c.ask(); err != nil || b != leaving {
		t.Errorf("open connection after its backend left: answered by %q (err %v), want %s", b, err, leaving)
	}
	if seen := spread(t, client, "tcp", "10.96.0.17:80", 4); len(seen) != 1 || seen[staying] != 4 {
		t.Errorf("new connections went to %v, want only %s", keys(seen), staying)
	}
	if w, ok := realServerWeight(t, "10.96.0.17:80", tp.pods[leaving].addr.String()+":8080"); !ok || w != 0 {
		t.Errorf("leaving real server: present=%v weight=%d, want present with weight 0 while draining", ok, w)
	}
}

func TestVMUDPRealServerGoesAtOnce(t *testing.T) {
	tp, d := guest(t)
	s := svc{name: "udp-drain", udp: true, clusterIP: "10.96.0.18", cluster: []string{"a", "b"}}
	applyAll(t, d, tp.port(s))
	c, err := tp.pods["client"].dial("udp", "10.96.0.18:80", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leaving, _, err := c.ask()
	if err != nil {
		t.Fatal(err)
	}
	staying := map[string]string{"a": "b", "b": "a"}[leaving]
	s.cluster = []string{staying}
	applyAll(t, d, tp.port(s))
	out, _ := exec.Command("ipvsadm", "-Ln", "-u", "10.96.0.18:80").CombinedOutput()
	if strings.Contains(string(out), tp.pods[leaving].addr.String()+":8080") {
		t.Errorf("UDP real server still present:\n%s", out)
	}
	// The same client socket (same flow) now reaches the remaining backend: its conntrack entry
	// is gone. The first datagram may be lost while IPVS expires the old connection.
	var got string
	c.timeout = 3 * time.Second
	for range 5 {
		if got, _, err = c.ask(); err == nil {
			break
		}
	}
	if got != staying {
		t.Errorf("same UDP flow after its backend left: answered by %q (err %v), want %s", got, err, staying)
	}
}

func TestVMRestartKeepsConnections(t *testing.T) {
	vm.RequireInside(t)
	testenv.RequireRoot(t)
	tp := setupTopology(t)
	d1 := newDataplane(t, tp, false)
	s := svc{name: "restart", clusterIP: "10.96.0.19", cluster: []string{"a", "b"}}
	applyAll(t, d1, tp.port(s))
	c, err := tp.pods["client"].dial("tcp", "10.96.0.19:80", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	first, _, err := c.ask()
	if err != nil {
		t.Fatal(err)
	}
	d1.Close()

	d2 := newDataplane(t, tp, true)
	applyAll(t, d2, tp.port(s))
	if err := d2.Prune(context.Background(), map[string]bool{s.base(): true}); err != nil {
		t.Fatalf("Prune after restart: %v", err)
	}
	if b, _, err := c.ask(); err != nil || b != first {
		t.Errorf("connection across a restart: answered by %q (err %v), want %s", b, err, first)
	}
	for _, rs := range []string{"a", "b"} {
		if w, ok := realServerWeight(t, "10.96.0.19:80", tp.pods[rs].addr.String()+":8080"); !ok || w != 1 {
			t.Errorf("real server %s after restart: present=%v weight=%d", rs, ok, w)
		}
	}
}

func TestVMDeletedVirtualServerComesBack(t *testing.T) {
	tp, d := guest(t)
	s := svc{name: "drift", clusterIP: "10.96.0.20", cluster: []string{"a"}}
	applyAll(t, d, tp.port(s))
	client := tp.pods["client"]
	if out, err := exec.Command("ipvsadm", "-D", "-t", "10.96.0.20:80").CombinedOutput(); err != nil {
		t.Fatalf("deleting by hand: %v: %s", err, out)
	}
	if _, _, err := client.request("tcp", "10.96.0.20:80"); err == nil {
		t.Fatalf("request succeeded with the virtual server deleted")
	}
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if b, _, err := client.request("tcp", "10.96.0.20:80"); err != nil || b != "a" {
		t.Errorf("after Reconcile: answered by %q (err %v), want a", b, err)
	}
	// The nftables table deleted by hand comes back too.
	if out, err := exec.Command("nft", "delete", "table", "inet", "ganglion-ipvs").CombinedOutput(); err != nil {
		t.Fatalf("nft delete table: %v: %s", err, out)
	}
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if _, err := client.dial("tcp", "10.96.0.20:81", 30*time.Second); !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("unknown port after the table was repaired: %v, want refused", err)
	}
	if b, _, err := client.request("tcp", "10.96.0.20:80"); err != nil || b != "a" {
		t.Errorf("after table repair: answered by %q (err %v), want a", b, err)
	}
	// And so does the service address removed from our device.
	if out, err := exec.Command("ip", "addr", "del", "10.96.0.20/32", "dev", "ganglion-ipvs0").CombinedOutput(); err != nil {
		t.Fatalf("ip addr del: %v: %s", err, out)
	}
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if b, _, err := client.request("tcp", "10.96.0.20:80"); err != nil || b != "a" {
		t.Errorf("after address repair: answered by %q (err %v), want a", b, err)
	}
}

func TestVMIPv6(t *testing.T) {
	tp, d := guest(t)
	s := svc{name: "v6", v6: true, clusterIP: "fd00:96::10", nodePort: 30090, cluster: []string{"a", "b"}}
	u := svc{name: "v6-udp", v6: true, udp: true, clusterIP: "fd00:96::10", cluster: []string{"a", "b"}}
	applyAll(t, d, tp.port(s), tp.port(u))
	client := tp.pods["client"]
	if seen := spread(t, client, "tcp", "[fd00:96::10]:80", 4); len(seen) != 2 {
		t.Errorf("backends seen = %v, want a and b", keys(seen))
	}
	if _, src, err := client.request("tcp", "[fd00:96::10]:80"); err != nil || src != client.addr6.String() {
		t.Errorf("pod request: source seen %q (err %v), want %s", src, err, client.addr6)
	}
	if seen := spread(t, client, "udp", "[fd00:96::10]:80", 4); len(seen) != 2 {
		t.Errorf("UDP backends seen = %v, want a and b", keys(seen))
	}
	b, src, err := tp.pods["ext"].request("tcp", "["+nodeAddr6+"]:30090")
	if err != nil || (b != "a" && b != "b") || src == extAddr6 {
		t.Errorf("IPv6 NodePort from outside: answered by %q seeing %q (err %v), want a or b seeing a node address", b, src, err)
	}
}

func TestVMHairpin(t *testing.T) {
	tp, d := guest(t)
	s := svc{name: "hairpin", clusterIP: "10.96.0.21", cluster: []string{"a"}}
	applyAll(t, d, tp.port(s))
	// Pod a reaches itself through its service: without masquerade it would receive a packet
	// from its own address and drop it.
	if b, _, err := tp.pods["a"].request("tcp", "10.96.0.21:80"); err != nil || b != "a" {
		t.Errorf("hairpin: answered by %q (err %v), want a", b, err)
	}
}

func TestVMLoadBalancerSourceRanges(t *testing.T) {
	tp, d := guest(t)
	allowed := svc{name: "lb-allowed", clusterIP: "10.96.0.22", lb: "203.0.113.10", ranges: []string{"192.168.0.0/24"}, cluster: []string{"a"}}
	denied := svc{name: "lb-denied", clusterIP: "10.96.0.23", lb: "203.0.113.11", ranges: []string{"198.51.100.0/24"}, cluster: []string{"a"}}
	applyAll(t, d, tp.port(allowed), tp.port(denied))
	ext := tp.pods["ext"]
	if b, _, err := ext.request("tcp", "203.0.113.10:80"); err != nil || b != "a" {
		t.Errorf("client inside the source ranges: answered by %q (err %v), want a", b, err)
	}
	if _, err := ext.dial("tcp", "203.0.113.11:80", 2*time.Second); !netlab.IsTimeout(err) {
		t.Errorf("client outside the source ranges: dial error %v, want a timeout (dropped)", err)
	}
}

// TestVMDrainIsBounded checks the drain loop against the real kernel: a real server that left
// is deleted once its drain time is up, even though IPVS still counts its closed connection
// (TIME_WAIT) for two minutes.
func TestVMDrainIsBounded(t *testing.T) {
	vm.RequireInside(t)
	testenv.RequireRoot(t)
	tp := setupTopology(t)
	d := newDataplaneWith(t, ipvs.Options{Node: tp.node, DrainInterval: 100 * time.Millisecond, DrainTimeout: time.Second}, true)
	s := svc{name: "bounded", clusterIP: "10.96.0.24", cluster: []string{"a"}}
	applyAll(t, d, tp.port(s))
	if _, _, err := tp.pods["client"].request("tcp", "10.96.0.24:80"); err != nil {
		t.Fatal(err)
	}
	s.cluster = []string{"b"}
	applyAll(t, d, tp.port(s))
	rs := tp.pods["a"].addr.String() + ":8080"
	for range 600 {
		if _, ok := realServerWeight(t, "10.96.0.24:80", rs); !ok {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("drained real server %s still present", rs)
}

func TestVMWeightsAndStrictARP(t *testing.T) {
	vm.RequireInside(t)
	testenv.RequireRoot(t)
	tp := setupTopology(t)
	d := newDataplaneWith(t, ipvs.Options{Node: tp.node, StrictARP: true}, true)
	s := svc{name: "weights", clusterIP: "10.96.0.25", sched: "wrr", cluster: []string{"a", "b"}, weights: map[string]uint32{"a": 3}}
	applyAll(t, d, tp.port(s))
	if seen := spread(t, tp.pods["client"], "tcp", "10.96.0.25:80", 8); seen["a"] <= seen["b"] || seen["b"] == 0 {
		t.Errorf("wrr 3:1 answered %v, want mostly a and some b", seen)
	}
	for f, want := range map[string]string{"arp_ignore": "1", "arp_announce": "2"} {
		got, err := os.ReadFile("/proc/sys/net/ipv4/conf/all/" + f)
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("strict ARP: %s = %q (err %v), want %s", f, got, err, want)
		}
	}
}
