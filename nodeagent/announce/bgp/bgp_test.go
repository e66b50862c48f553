package bgp

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/announce/bgp/birdtest"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

const (
	routerASN = 64500
	nodeASN   = 64512
	vip       = "203.0.113.10"
)

// lab is a router namespace running BIRD and node namespaces, node i (1-based) joined to the
// router by its own veth: router 10.0.i.1 / fd00:i::1, node 10.0.i.2 / fd00:i::2.
type lab struct {
	router *birdtest.Router
	nodes  []*netlab.NS
}

func routerIP(i int) string  { return fmt.Sprintf("10.0.%d.1", i) }
func nodeIP(i int) string    { return fmt.Sprintf("10.0.%d.2", i) }
func routerIP6(i int) string { return fmt.Sprintf("fd00:%d::1", i) }
func nodeIP6(i int) string   { return fmt.Sprintf("fd00:%d::2", i) }

// newLab builds the namespaces and starts BIRD with one session per node (named node<i>) and,
// for the nodes in v6, an IPv6 session too (node<i>v6). passwords[i-1] is node i's MD5 key.
func newLab(t *testing.T, nodes int, v6 []int, passwords ...string) *lab {
	t.Helper()
	birdtest.Require(t)
	id := netlab.UniqueID()
	r := netlab.NewNS(t, "bgpr-"+id)
	l := &lab{}
	conf := birdtest.Config{RouterID: "10.0.0.1", ASN: routerASN}
	for i := 1; i <= nodes; i++ {
		n := netlab.NewNS(t, fmt.Sprintf("bgpn%d-%s", i, id))
		l.nodes = append(l.nodes, n)
		dev := fmt.Sprintf("n%d", i)
		netlab.Run(t, "ip", "-n", r.Name, "link", "add", dev, "type", "veth", "peer", "name", "eth0", "netns", n.Name)
		r.Run(t, "ip", "addr", "add", routerIP(i)+"/24", "dev", dev)
		r.Run(t, "ip", "addr", "add", routerIP6(i)+"/64", "dev", dev, "nodad")
		r.Run(t, "ip", "link", "set", dev, "up")
		n.Run(t, "ip", "addr", "add", nodeIP(i)+"/24", "dev", "eth0")
		n.Run(t, "ip", "addr", "add", nodeIP6(i)+"/64", "dev", "eth0", "nodad")
		n.Run(t, "ip", "link", "set", "eth0", "up")
		pw := ""
		if i <= len(passwords) {
			pw = passwords[i-1]
		}
		conf.Neighbors = append(conf.Neighbors, birdtest.Neighbor{Name: fmt.Sprintf("node%d", i),
			Local: routerIP(i), Address: nodeIP(i), ASN: nodeASN, Password: pw})
		if slices.Contains(v6, i) {
			conf.Neighbors = append(conf.Neighbors, birdtest.Neighbor{Name: fmt.Sprintf("node%dv6", i),
				Local: routerIP6(i), Address: nodeIP6(i), ASN: nodeASN, Password: pw, IPv6: true})
		}
	}
	l.router = birdtest.Start(t, r, conf)
	return l
}

// speaker starts a speaker process in node i's namespace.
func (l *lab) speaker(t *testing.T, i int) *speakerProc {
	return startSpeaker(t, l.nodes[i-1], nodeIP(i), nodeIP6(i))
}

// conf is node i's BGPConfig: one IPv4 session with the router (and an IPv6 one with v6).
func conf(i int, grSeconds uint32, v6 bool, password string, communities ...string) *v1.BGPConfig {
	c := &v1.BGPConfig{LocalAsn: nodeASN, GracefulRestartSeconds: grSeconds, Communities: communities,
		Peers: []*v1.BGPPeer{{Address: routerIP(i), Asn: routerASN, Password: password, HoldTimeSeconds: 9}}}
	if v6 {
		c.Peers = append(c.Peers, &v1.BGPPeer{Address: routerIP6(i), Asn: routerASN, Password: password, HoldTimeSeconds: 9})
	}
	return c
}

func (l *lab) waitNexthops(t *testing.T, prefix string, want ...string) {
	t.Helper()
	slices.Sort(want)
	var got []string
	testwait.Eventually(t, fmt.Sprintf("router's kernel route %s via %v", prefix, want), func() bool {
		got = l.router.Nexthops(prefix)
		return slices.Equal(got, want)
	})
}

var receivedRe = regexp.MustCompile(`Import updates:\s+(\d+)`)

// importUpdates is how many route updates the router has received on a session.
func (l *lab) importUpdates(t *testing.T, proto string) int {
	t.Helper()
	out, err := l.router.Birdc("show", "protocols", "all", proto)
	if err != nil {
		t.Fatal(err)
	}
	m := receivedRe.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no import update count in:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func TestSpeakerAdvertisesECMPAndWithdraws(t *testing.T) {
	l := newLab(t, 2, []int{1})
	n1, n2 := l.speaker(t, 1), l.speaker(t, 2)
	c1 := conf(1, 0, true, "", "64512:100", "64512:7:9")
	n1.mustSet(t, c1, vip, "203.0.113.11", "2001:db8::10")
	n2.mustSet(t, conf(2, 0, false, ""), vip)

	l.waitNexthops(t, vip+"/32", nodeIP(1), nodeIP(2))
	l.waitNexthops(t, "203.0.113.11/32", nodeIP(1))
	l.waitNexthops(t, "2001:db8::10/128", nodeIP6(1))

	t.Run("sessions are dialed from the node's namespace and nothing listens there", func(t *testing.T) {
		for i, n := range l.nodes {
			est := n.Run(t, "ss", "-Htn", "state", "established")
			if !strings.Contains(est, nodeIP(i+1)+":") || !strings.Contains(est, routerIP(i+1)+":179") {
				t.Errorf("node %d: no session %s -> %s:179 in its namespace:\n%s", i+1, nodeIP(i+1), routerIP(i+1), est)
			}
			if ls := strings.TrimSpace(n.Run(t, "ss", "-Htln")); ls != "" {
				t.Errorf("node %d: the speaker listens (no BGP or gRPC listener allowed):\n%s", i+1, ls)
			}
		}
		for _, a := range []string{routerIP(1), routerIP6(1)} {
			if !n1.up(t, a) {
				t.Errorf("Peers() does not report %s up: %+v", a, n1.peers(t))
			}
		}
	})

	t.Run("metrics report the sessions and routes", func(t *testing.T) {
		m := n1.metrics(t)
		for k, want := range map[string]float64{
			`ganglion_announce_bgp_peer_up{peer="10.0.1.1"}`:  1,
			`ganglion_announce_bgp_peer_up{peer="fd00:1::1"}`: 1,
			`ganglion_announce_bgp_routes{}`:                  3,
		} {
			if got, ok := m[k]; !ok || got != want {
				t.Errorf("%s = %v (present %v); want %v; all: %v", k, got, ok, want, m)
			}
		}
	})

	t.Run("communities reach the router", func(t *testing.T) {
		out := l.router.RouteAll(vip + "/32")
		for _, want := range []string{"BGP.community: (64512,100)", "BGP.large_community: (64512, 7, 9)"} {
			if !strings.Contains(out, want) {
				t.Errorf("route lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("the same Set twice sends nothing", func(t *testing.T) {
		before := l.importUpdates(t, "node1")
		n1.mustSet(t, c1, vip, "203.0.113.11", "2001:db8::10")
		// A change after it: its update comes after any the repeat would have sent (one TCP
		// stream), so once it has arrived the count tells whether the repeat sent any.
		n1.mustSet(t, c1, vip, "203.0.113.11", "203.0.113.12", "2001:db8::10")
		l.waitNexthops(t, "203.0.113.12/32", nodeIP(1))
		if after := l.importUpdates(t, "node1"); after != before+1 {
			t.Errorf("import updates on node1: %d before, %d after; want exactly one more (the new route)", before, after)
		}
	})

	t.Run("changing one peer resets only its session", func(t *testing.T) {
		v4, v6 := l.router.Since("node1"), l.router.Since("node1v6")
		if v4 == "" || v6 == "" {
			t.Fatalf("no state change time for node1 (%q) or node1v6 (%q)", v4, v6)
		}
		changed := conf(1, 0, true, "", "64512:100", "64512:7:9")
		changed.Peers[1].HoldTimeSeconds = 12
		n1.mustSet(t, changed, vip, "203.0.113.11", "203.0.113.12", "2001:db8::10")
		testwait.Eventually(t, "the IPv6 session comes back with the new hold time", func() bool {
			return l.router.Since("node1v6") != v6 && l.router.Established("node1v6") &&
				strings.Contains(l.router.Protocol("node1v6"), "/12")
		})
		if now := l.router.Since("node1"); now != v4 {
			t.Errorf("the unchanged IPv4 session was reset: up since %s, before %s", now, v4)
		}
		l.waitNexthops(t, "2001:db8::10/128", nodeIP6(1))
		c1 = changed
	})

	t.Run("a new router ID restarts the server", func(t *testing.T) {
		c1.RouterId = "10.9.9.9"
		n1.mustSet(t, c1, vip, "203.0.113.11", "203.0.113.12", "2001:db8::10")
		testwait.Eventually(t, "the router sees the new router ID", func() bool {
			return regexp.MustCompile(`Neighbor ID:\s+10\.9\.9\.9`).MatchString(l.router.Protocol("node1")) &&
				l.router.Established("node1")
		})
		l.waitNexthops(t, vip+"/32", nodeIP(1), nodeIP(2))
	})

	t.Run("a route left out of Set is withdrawn", func(t *testing.T) {
		n2.mustSet(t, conf(2, 0, false, ""))
		l.waitNexthops(t, vip+"/32", nodeIP(1))
		n1.mustSet(t, c1, "203.0.113.11")
		l.waitNexthops(t, vip+"/32")
		l.waitNexthops(t, "2001:db8::10/128")
		l.waitNexthops(t, "203.0.113.11/32", nodeIP(1))
	})

	t.Run("Set nil stops peering", func(t *testing.T) {
		n1.mustSet(t, nil)
		l.waitNexthops(t, "203.0.113.11/32")
		testwait.Eventually(t, "router sees node1's session down", func() bool { return !l.router.Established("node1") })
	})
}

func TestSpeakerGracefulRestart(t *testing.T) {
	top := t // speakers started in a subtest live on after it
	l := newLab(t, 2, nil)
	n1, n2 := l.speaker(t, 1), l.speaker(t, 2)
	grConf := conf(1, 120, false, "")
	n1.mustSet(t, grConf, vip)
	n2.mustSet(t, conf(2, 0, false, ""), vip)
	l.waitNexthops(t, vip+"/32", nodeIP(1), nodeIP(2))
	testwait.Eventually(t, "router has both sessions up", func() bool {
		return l.router.Established("node1") && l.router.Established("node2")
	})

	t.Run("with GR, Stop leaves the route at the router", func(t *testing.T) {
		n1.stop(t)
		testwait.Eventually(t, "router sees node1's session down", func() bool { return !l.router.Established("node1") })
		if got := l.router.Nexthops(vip + "/32"); !slices.Contains(got, nodeIP(1)) {
			t.Fatalf("router dropped node1's route after a graceful stop: nexthops %v", got)
		}
		if out := l.router.Protocol("node1"); !strings.Contains(out, "Neighbor graceful restart active") {
			t.Fatalf("router is not in graceful restart for node1:\n%s", out)
		}
	})

	t.Run("a new speaker refreshes the stale route", func(t *testing.T) {
		n1.kill()
		before := l.importUpdates(t, "node1")
		n1 = l.speaker(top, 1)
		n1.mustSet(t, grConf, vip)
		// The router ends graceful restart when the new session has sent its routes and
		// End-of-RIB; the route it received again is no longer stale.
		testwait.Eventually(t, "router ends node1's graceful restart with the route re-advertised", func() bool {
			return l.router.Established("node1") &&
				!strings.Contains(l.router.Protocol("node1"), "graceful restart active") &&
				l.importUpdates(t, "node1") > before
		})
		l.waitNexthops(t, vip+"/32", nodeIP(1), nodeIP(2))
	})

	t.Run("with GR, a killed agent's routes stay until its successor's End-of-RIB", func(t *testing.T) {
		n1.mustSet(t, grConf, vip, "203.0.113.20")
		l.waitNexthops(t, "203.0.113.20/32", nodeIP(1))
		n1.kill()
		testwait.Eventually(t, "router sees node1's session down", func() bool { return !l.router.Established("node1") })
		if got := l.router.Nexthops(vip + "/32"); !slices.Contains(got, nodeIP(1)) {
			t.Fatalf("router dropped node1's route after the agent died: nexthops %v", got)
		}
		l.waitNexthops(t, "203.0.113.20/32", nodeIP(1))
		// The successor no longer wants 203.0.113.20: the router flushes the stale route once
		// the new session's End-of-RIB says what is still advertised.
		n1 = l.speaker(top, 1)
		n1.mustSet(t, grConf, vip)
		l.waitNexthops(t, "203.0.113.20/32")
		l.waitNexthops(t, vip+"/32", nodeIP(1), nodeIP(2))
		testwait.Eventually(t, "router sees node1's session up", func() bool { return l.router.Established("node1") })
	})

	t.Run("without GR, Stop withdraws at once", func(t *testing.T) {
		n2.stop(t)
		// Well before a 120 s restart time: node2 advertised no GR capability.
		l.waitNexthops(t, vip+"/32", nodeIP(1))
	})

	t.Run("with GR, Set nil withdraws at once", func(t *testing.T) {
		// The brain took the peering away: that is no restart, the routes must go.
		n1.mustSet(t, nil)
		l.waitNexthops(t, vip+"/32")
	})
}

func TestSpeakerMD5(t *testing.T) {
	l := newLab(t, 2, nil, "right-one", "right-two")
	n1, n2 := l.speaker(t, 1), l.speaker(t, 2)
	n1.mustSet(t, conf(1, 0, false, "right-one"), vip)
	failures := l.router.Counter("TCPMD5Failure")
	n2.mustSet(t, conf(2, 0, false, "wrong"), vip)

	testwait.Eventually(t, "node1's session with the right key is up", func() bool { return l.router.Established("node1") })
	l.waitNexthops(t, vip+"/32", nodeIP(1))
	// The router's kernel drops node2's segments with the wrong signature: once it has counted
	// one, node2 has tried and failed.
	testwait.Eventually(t, "router's kernel rejects a segment with a wrong MD5 signature", func() bool {
		return l.router.Counter("TCPMD5Failure") > failures
	})
	if l.router.Established("node2") || n2.up(t, routerIP(2)) {
		t.Fatal("node2's session with a wrong key is up")
	}

	n2.mustSet(t, conf(2, 0, false, "right-two"), vip)
	l.waitNexthops(t, vip+"/32", nodeIP(1), nodeIP(2))
}
