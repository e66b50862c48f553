package ipvs

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// The guest's topology. The VM's root namespace is node 1, where the dataplane runs; everything
// else is a namespace routed through it:
//
//	ext (192.168.0.100) --- node1 192.168.0.1 [ganglion-ipvs0]
//	                          |-- pods a, b, c, client: 10.1.1.4i+2/30 (pod CIDR 10.1.1.0/24)
//	                          `-- 172.16.0.1 --- node2 172.16.0.2 -- pod r: 10.1.2.2/30
//
// and in IPv6, ext fd00:192::100 --- node1 fd00:192::1, pods fd00:1:1::4i+2/126.
const (
	nodeAddr   = "192.168.0.1"
	extAddr    = "192.168.0.100"
	nodeAddr6  = "fd00:192::1"
	extAddr6   = "fd00:192::100"
	node2Link  = "172.16.0.1"
	serverPort = 8080
)

// pod is a namespace with one address. The topology outlives every test, so its namespaces are
// netlab.OpenNS's, removed by TestMain, rather than netlab.NewNS's, removed when a test ends.
type pod struct {
	name  string
	addr  netip.Addr
	addr6 netip.Addr
	ns    *netlab.NS
}

type topology struct {
	pods map[string]*pod
	node dataplane.Node
}

var (
	topoOnce sync.Once
	topo     *topology
	topoErr  error
)

func run(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func runAll(cmds [][]string) error {
	for _, c := range cmds {
		if err := run(c...); err != nil {
			return err
		}
	}
	return nil
}

// setupTopology builds the namespaces once per guest run; the guest is thrown away after it.
func setupTopology(t *testing.T) *topology {
	t.Helper()
	topoOnce.Do(func() { topo, topoErr = buildTopology() })
	if topoErr != nil {
		t.Fatalf("topology: %v", topoErr)
	}
	return topo
}

func buildTopology() (*topology, error) {
	tp := &topology{pods: map[string]*pod{}}
	for _, f := range []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/net/ipv6/conf/all/forwarding"} {
		if err := os.WriteFile(f, []byte("1"), 0o644); err != nil {
			return nil, err
		}
	}
	cmds := [][]string{
		{"ip", "netns", "add", "ext"},
		{"ip", "link", "add", "gext", "type", "veth", "peer", "name", "eth0", "netns", "ext"},
		{"ip", "addr", "add", nodeAddr + "/24", "dev", "gext"},
		{"ip", "link", "set", "gext", "up"},
		{"ip", "-n", "ext", "addr", "add", extAddr + "/24", "dev", "eth0"},
		{"ip", "-n", "ext", "link", "set", "eth0", "up"},
		{"ip", "-n", "ext", "link", "set", "lo", "up"},
		{"ip", "-n", "ext", "route", "add", "default", "via", nodeAddr},
		{"ip", "addr", "add", nodeAddr6 + "/64", "dev", "gext", "nodad"},
		{"ip", "-n", "ext", "addr", "add", extAddr6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "-n", "ext", "-6", "route", "add", "default", "via", nodeAddr6},
		{"ip", "netns", "add", "node2"},
		{"ip", "link", "add", "gn2", "type", "veth", "peer", "name", "eth0", "netns", "node2"},
		{"ip", "addr", "add", node2Link + "/30", "dev", "gn2"},
		{"ip", "link", "set", "gn2", "up"},
		{"ip", "-n", "node2", "addr", "add", "172.16.0.2/30", "dev", "eth0"},
		{"ip", "-n", "node2", "link", "set", "eth0", "up"},
		{"ip", "-n", "node2", "link", "set", "lo", "up"},
		{"ip", "-n", "node2", "route", "add", "default", "via", node2Link},
		{"ip", "route", "add", "10.1.2.0/24", "via", "172.16.0.2"},
	}
	if err := runAll(cmds); err != nil {
		return nil, err
	}
	n2, err := netlab.OpenNS("node2")
	if err != nil {
		return nil, err
	}
	defer n2.Close()
	// /proc/sys/net shows the namespace of the thread that opens it.
	if err := n2.Do(func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		return nil, err
	}
	for i, name := range []string{"a", "b", "c", "client"} {
		if err := tp.addPod(name, "", fmt.Sprintf("10.1.1.%d", 4*i+1), fmt.Sprintf("10.1.1.%d", 4*i+2)); err != nil {
			return nil, err
		}
		if err := tp.addPod6(name, fmt.Sprintf("fd00:1:1::%x", 4*i+1), fmt.Sprintf("fd00:1:1::%x", 4*i+2)); err != nil {
			return nil, err
		}
	}
	if err := tp.addPod("r", "node2", "10.1.2.1", "10.1.2.2"); err != nil {
		return nil, err
	}
	ext, err := netlab.OpenNS("ext")
	if err != nil {
		return nil, err
	}
	tp.pods["ext"] = &pod{name: "ext", addr: netip.MustParseAddr(extAddr), addr6: netip.MustParseAddr(extAddr6), ns: ext}
	tp.node = dataplane.Node{
		Name:      "node1",
		Addresses: []netip.Addr{netip.MustParseAddr(nodeAddr), netip.MustParseAddr(nodeAddr6)},
		PodCIDRs:  []netip.Prefix{netip.MustParsePrefix("10.1.1.0/24"), netip.MustParsePrefix("fd00:1:1::/64")},
	}
	return tp, nil
}

// addPod creates a pod namespace behind host (the root namespace, or node2) on a /30.
func (tp *topology) addPod(name, host, gw, addr string) error {
	ns := "pod-" + name
	hostLink := "v" + name
	in := func(args ...string) []string {
		if host == "" {
			return append([]string{"ip"}, args...)
		}
		return append([]string{"ip", "-n", host}, args...)
	}
	cmds := [][]string{
		{"ip", "netns", "add", ns},
		in("link", "add", hostLink, "type", "veth", "peer", "name", "eth0", "netns", ns),
		in("addr", "add", gw+"/30", "dev", hostLink),
		in("link", "set", hostLink, "up"),
		{"ip", "-n", ns, "addr", "add", addr + "/30", "dev", "eth0"},
		{"ip", "-n", ns, "link", "set", "eth0", "up"},
		{"ip", "-n", ns, "link", "set", "lo", "up"},
		{"ip", "-n", ns, "route", "add", "default", "via", gw},
	}
	if err := runAll(cmds); err != nil {
		return err
	}
	h, err := netlab.OpenNS(ns)
	if err != nil {
		return err
	}
	p := &pod{name: name, addr: netip.MustParseAddr(addr), ns: h}
	tp.pods[name] = p
	if name != "client" {
		// netlab's servers, named after the pod, for the guest's lifetime. Listening on the
		// wildcard serves both families, including addresses added later.
		_, err = h.Listen(name, serverPort)
		return err
	}
	return nil
}

// addPod6 gives a pod of node 1 an IPv6 address on a /126, without duplicate detection, which
// would leave it unusable for a while.
func (tp *topology) addPod6(name, gw, addr string) error {
	ns := "pod-" + name
	err := runAll([][]string{
		{"ip", "addr", "add", gw + "/126", "dev", "v" + name, "nodad"},
		{"ip", "-n", ns, "addr", "add", addr + "/126", "dev", "eth0", "nodad"},
		{"ip", "-n", ns, "-6", "route", "add", "default", "via", gw},
	})
	if err != nil {
		return err
	}
	tp.pods[name].addr6 = netip.MustParseAddr(addr)
	return nil
}

func teardownTopology() {
	for _, ns := range []string{"ext", "node2", "pod-a", "pod-b", "pod-c", "pod-client", "pod-r"} {
		_ = run("ip", "netns", "del", ns)
	}
}

// conn is a client connection from a namespace to a service, with the guest's generous
// deadlines (netlab's clients give up after netlab.DialTimeout).
type conn struct {
	c  net.Conn
	rd *bufio.Reader
	// timeout bounds one ask; zero means askTimeout.
	timeout time.Duration
}

const askTimeout = 30 * time.Second

// dial connects from p to addr; the socket is created in p's namespace.
func (p *pod) dial(network, addr string, timeout time.Duration) (*conn, error) {
	c, err := p.ns.DialNet(network, addr, timeout)
	if err != nil {
		return nil, err
	}
	return newConn(c)
}

// newConn wraps c. Over TCP, netlab's server greets a connection first; the greeting is read
// here so that each ask reads the answer to its own line.
func newConn(c net.Conn) (*conn, error) {
	cn := &conn{c: c, rd: bufio.NewReader(c)}
	if _, ok := c.(*net.TCPConn); ok {
		_ = c.SetDeadline(time.Now().Add(askTimeout))
		if _, err := cn.rd.ReadString('\n'); err != nil {
			c.Close()
			return nil, fmt.Errorf("greeting: %w", err)
		}
	}
	return cn, nil
}

// ask sends a line and returns the server's answer: backend name and the client it saw.
// The deadline is generous: the guest runs under emulation on a shared machine. Tests that
// expect silence use their own short dial timeouts, which only err on the safe side.
func (c *conn) ask() (backend, client string, err error) {
	timeout := c.timeout
	if timeout == 0 {
		timeout = askTimeout
	}
	_ = c.c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.c.Write([]byte("ping\n")); err != nil {
		return "", "", err
	}
	line, err := c.rd.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", "", fmt.Errorf("bad answer %q", line)
	}
	return f[0], f[1], nil
}

func (c *conn) Close() { c.c.Close() }

// request opens a fresh connection from p, asks once and closes it.
func (p *pod) request(network, addr string) (backend, client string, err error) {
	c, err := p.dial(network, addr, 30*time.Second)
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	return c.ask()
}
