package ipvs

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"

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

// pod is a namespace with one address.
type pod struct {
	name  string
	addr  netip.Addr
	addr6 netip.Addr
	ns    netns.NsHandle
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
	n2, err := netns.GetFromName("node2")
	if err != nil {
		return nil, err
	}
	// /proc/sys/net shows the namespace of the thread that opens it.
	if err := inNS(n2, func() error {
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
	ext, err := netns.GetFromName("ext")
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
	h, err := netns.GetFromName(ns)
	if err != nil {
		return err
	}
	p := &pod{name: name, addr: netip.MustParseAddr(addr), ns: h}
	tp.pods[name] = p
	if name != "client" {
		// Listening on the wildcard serves both families, including addresses added later.
		return p.serve()
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

// inNS runs fn on a thread switched into ns: sockets created there stay in ns.
func inNS(ns netns.NsHandle, fn func() error) error {
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	if err := netns.Set(ns); err != nil {
		runtime.UnlockOSThread()
		return err
	}
	ferr := fn()
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the wrong namespace: leave it locked so it dies with the goroutine.
		return errors.Join(ferr, err)
	}
	runtime.UnlockOSThread()
	return ferr
}

// serve starts TCP and UDP servers in the pod that answer every line or datagram with
// "<pod> <client address>", so tests see both the chosen backend and the source it saw.
func (p *pod) serve() error {
	var ln net.Listener
	var pc net.PacketConn
	err := inNS(p.ns, func() error {
		var err error
		if ln, err = net.Listen("tcp", fmt.Sprintf(":%d", serverPort)); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp", fmt.Sprintf(":%d", serverPort))
		return err
	})
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				client := c.RemoteAddr().(*net.TCPAddr).IP.String()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					fmt.Fprintf(c, "%s %s\n", p.name, client)
				}
			}()
		}
	}()
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_ = n
			fmt.Fprintf(pcWriter{pc, addr}, "%s %s\n", p.name, addr.(*net.UDPAddr).IP)
		}
	}()
	return nil
}

type pcWriter struct {
	pc   net.PacketConn
	addr net.Addr
}

func (w pcWriter) Write(b []byte) (int, error) { return w.pc.WriteTo(b, w.addr) }

// conn is a client connection from a namespace to a service.
type conn struct {
	c  net.Conn
	rd *bufio.Reader
	// timeout bounds one ask; zero means 30 s.
	timeout time.Duration
}

// dial connects from p to addr; the socket is created in p's namespace.
func (p *pod) dial(network, addr string, timeout time.Duration) (*conn, error) {
	var c net.Conn
	err := inNS(p.ns, func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &conn{c: c, rd: bufio.NewReader(c)}, nil
}

// ask sends a line and returns the server's answer: backend name and the client it saw.
// The deadline is generous: the guest runs under emulation on a shared machine. Tests that
// expect silence use their own short dial timeouts, which only err on the safe side.
func (c *conn) ask() (backend, client string, err error) {
	timeout := c.timeout
	if timeout == 0 {
		timeout = 30 * time.Second
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
