package announce

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
	"github.com/ganglion-proxy/ganglion/nodeagent/announce/bgp/birdtest"
)

// The lab: netlab's fabric (a bridge, 192.168.77.0/24) is also the outside router: bird2 runs
// there as AS 64500 and the brain beside it. Three nodes (AS 64512) with one pod each, and an
// outside client on the fabric that reaches an L2 address on its own segment and a BGP address
// through the router.
const (
	brainAddr = netlab.FabricIP + ":7070"
	routerASN = 64500
	nodeASN   = 64512
	// l2VIP is on the fabric's segment: the client asks who has it (ARP).
	l2VIP = "192.168.77.200"
	// bgpVIP is elsewhere: the client sends it to the router, which learned it over BGP.
	bgpVIP      = "203.0.113.20"
	servicePort = 80
)

// lab is the system under test.
type lab struct {
	t      testing.TB
	net    *netlab.Lab
	pki    *testpki.PKI
	brain  *proc.Proc
	agents []*proc.Proc
	ctl    []string // ganglionctl and its flags, run in the fabric namespace
	router *birdtest.Router
	dir    string
}

// announceConfig has every node peer with the router, and answer ARP for the addresses it owns.
var announceConfig = fmt.Sprintf(`l2: true
bgp:
  groups:
  - localASN: %d
    gracefulRestartSeconds: 60
    peers:
    - {address: %s, asn: %d, holdTimeSeconds: 9}
`, nodeASN, netlab.FabricIP, routerASN)

// newLab starts the router, the brain on its embedded store and an nftables agent per node.
func newLab(t testing.TB) *lab {
	t.Helper()
	birdtest.Require(t)
	l := &lab{t: t, net: netlab.NewLab(t, netlab.LabOptions{Nodes: 3, PodsPerNode: 1}), pki: testpki.New(t), dir: t.TempDir()}
	f := l.net.Fabric
	// The fabric routes: it forwards, spreads flows over a multipath route by their ports, and
	// sends no redirects (the client must keep using it, not go to the node it forwarded to).
	for _, s := range []string{"net.ipv4.ip_forward=1", "net.ipv4.fib_multipath_hash_policy=1",
		"net.ipv4.conf.all.send_redirects=0", "net.ipv4.conf.br0.send_redirects=0"} {
		f.Run(t, "sysctl", "-qw", s)
	}
	l.net.Client.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.accept_redirects=0")
	l.net.Client.Run(t, "ip", "route", "add", bgpVIP+"/32", "via", netlab.FabricIP)

	// The router peers passively with the three nodes and installs what it learns into the
	// fabric's kernel table, equal routes merged into one multipath route (ECMP).
	router := birdtest.Config{RouterID: netlab.FabricIP, ASN: routerASN}
	for i := 1; i <= 3; i++ {
		router.Neighbors = append(router.Neighbors, birdtest.Neighbor{Name: fmt.Sprintf("node%d", i),
			Local: netlab.FabricIP, Address: netlab.LabNodeIP(i), ASN: nodeASN})
	}
	l.router = birdtest.Start(t, f, router)

	health := testenv.FreeAddr(t)
	argv := append([]string{filepath.Join(proc.Binaries(t), "ganglion-controlplane"), "serve",
		"--listen", brainAddr, "--health-listen", health, "--metrics-listen", "",
		"--announce-config", l.write("announce.yaml", announceConfig)},
		proc.EtcdArgs(t, l.dir)...)
	argv = append(argv, l.pki.BrainFlags(netlab.FabricIP)...)
	l.brain = proc.Start(t, f.Command(argv...)...)

	admin := l.pki.Issue(pki.RoleAdmin, "e2e")
	l.ctl = f.Command(filepath.Join(proc.Binaries(t), "ganglionctl"), "--server", brainAddr,
		"--cert", admin.Cert, "--key", admin.Key, "--ca", l.pki.CAFile)
	proc.EventuallyWithin(t, 2*time.Minute, "the brain answers", func() bool {
		if l.brain.Exited() {
			t.Fatalf("brain exited:\n%s", proc.Tail(l.brain.Output(), 4000))
		}
		_, err := l.run("nodes")
		return err == nil
	})
	for i := 1; i <= 3; i++ {
		l.agents = append(l.agents, l.startAgent(i))
	}
	proc.Eventually(t, "three nodes connected", func() bool {
		out, _ := l.run("nodes")
		return strings.Count(out, " true ") >= 3
	})
	return l
}

func (l *lab) write(name, content string) string {
	p := filepath.Join(l.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		l.t.Fatal(err)
	}
	return p
}

func (l *lab) startAgent(i int) *proc.Proc {
	node := nodeName(i)
	argv := append([]string{filepath.Join(proc.Binaries(l.t), "ganglion-agent"),
		"--node-name", node, "--brain", brainAddr, "--dataplane", "nftables",
		"--node-ip", netlab.LabNodeIP(i), "--pod-cidr", netlab.LabPodCIDR(i),
		"--healthz-bind-address", netlab.LabNodeIP(i) + ":10256", "--metrics-bind-address", ""}, l.pki.AgentFlags(node)...)
	return proc.Start(l.t, l.net.Nodes[i-1].NS.Command(argv...)...)
}

func nodeName(i int) string { return fmt.Sprintf("node-%d", i) }

// run runs ganglionctl in the fabric namespace.
func (l *lab) run(args ...string) (string, error) {
	return runOut(append(append([]string{}, l.ctl...), args...))
}

// apply stores a manifest through ganglionctl.
func (l *lab) apply(name, doc string) {
	l.t.Helper()
	if out, err := l.run("apply", "-f", l.write(name, doc)); err != nil {
		l.t.Fatalf("apply %s: %v\n%s", name, err, out)
	}
}

// service is a bare-metal load balancer with ETP Local on address, one backend per listed node
// (its pod).
func service(name, address string, nodes ...int) string {
	var backends []string
	for _, i := range nodes {
		backends = append(backends, fmt.Sprintf("{address: %s, node: %s}", netlab.LabPodIP(i, 0), nodeName(i)))
	}
	return fmt.Sprintf(`apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: %s, namespace: default}
spec:
  type: LoadBalancer
  loadBalancerIPs: [%s]
  externalTrafficPolicy: Local
  ports: [{port: %d, targetPort: %d}]
  backends: [%s]
`, name, address, servicePort, netlab.PodPort, strings.Join(backends, ", "))
}

// announcers reads ganglionctl describe: which nodes advertise address over BGP, and its
// ARP/NDP owner.
func (l *lab) announcers(svc, address string) (bgp []string, owner string) {
	l.t.Helper()
	out, err := l.run("describe", "svc", svc, "-o", "json")
	if err != nil {
		l.t.Fatalf("describe %s: %v\n%s", svc, err, out)
	}
	var d struct {
		Nodes []struct {
			Node          string `json:"node"`
			Announcements []struct {
				Address string `json:"address"`
				BGP     bool   `json:"bgp"`
				L2      bool   `json:"l2"`
			} `json:"announcements"`
		} `json:"nodes"`
	}
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		l.t.Fatalf("describe %s: %v\n%s", svc, err, out)
	}
	for _, n := range d.Nodes {
		for _, a := range n.Announcements {
			if a.Address != address {
				continue
			}
			if a.BGP {
				bgp = append(bgp, n.Node)
			}
			if a.L2 {
				owner = n.Node
			}
		}
	}
	return bgp, owner
}

// ask asks address once from the client, on a new connection; it returns the answering pod.
func (l *lab) ask(address string, timeout time.Duration) (string, error) {
	c, err := l.net.Client.DialNet("tcp", net.JoinHostPort(address, fmt.Sprint(servicePort)), timeout)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 256)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return netlab.Backend(strings.TrimSpace(string(buf[:n]))), nil
}

func runOut(argv []string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}
