package l2_test

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ndp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/announce/l2"
)

// The link: a client and a node on 192.168.99.0/24 and fd00:99::/64, joined by a veth pair.
const (
	nodeMAC   = "02:00:00:99:00:02"
	otherMAC  = "02:00:00:99:00:99" // a previous owner's MAC, for takeovers
	clientDev = "c0"
	nodeDev   = "n0"
)

var (
	vip4  = netip.MustParseAddr("192.168.99.200")
	next4 = netip.MustParseAddr("192.168.99.201")
	vip6  = netip.MustParseAddr("fd00:99::200")
	next6 = netip.MustParseAddr("fd00:99::201")
)

// lab is the two namespaces and a speaker running in the node's.
type lab struct {
	client, node *netlab.NS
	speaker      *l2.Speaker
	reg          *prometheus.Registry
}

func newLab(t *testing.T) *lab {
	t.Helper()
	netlab.Require(t)
	id := netlab.UniqueID()
	l := &lab{client: netlab.NewNS(t, "l2c-"+id), node: netlab.NewNS(t, "l2n-"+id), reg: prometheus.NewRegistry()}
	for _, ns := range []*netlab.NS{l.client, l.node} {
		// No duplicate address detection: addresses are usable at once, and the node's link-local
		// address (the source of its advertisements) is not tentative when the speaker binds it.
		ns.Run(t, "sysctl", "-qw", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0")
	}
	l.client.Run(t, "ip", "link", "add", clientDev, "type", "veth", "peer", "name", nodeDev, "netns", l.node.Name)
	l.node.Run(t, "ip", "link", "set", nodeDev, "address", nodeMAC)
	for _, c := range []struct {
		ns   *netlab.NS
		dev  string
		host string
	}{{l.client, clientDev, "1"}, {l.node, nodeDev, "2"}} {
		c.ns.Run(t, "ip", "addr", "add", "192.168.99."+c.host+"/24", "dev", c.dev)
		c.ns.Run(t, "ip", "addr", "add", "fd00:99::"+c.host+"/64", "dev", c.dev, "nodad")
		c.ns.Run(t, "ip", "link", "set", c.dev, "up")
	}
	// The node's link-local address appears when its link is up; the NDP listener needs it.
	testwait.Eventually(t, "node link-local address", func() bool {
		return strings.Contains(l.node.Run(t, "ip", "-6", "addr", "show", "dev", nodeDev, "scope", "link"), "fe80::")
	})
	err := l.node.Do(func() error {
		var err error
		l.speaker, err = l2.New(l2.Config{Log: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})), Registerer: l.reg})
		return err
	})
	if err != nil {
		t.Fatalf("new speaker: %v", err)
	}
	t.Cleanup(func() {
		if err := l.speaker.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

// set calls Set from the node's namespace, where the speaker looks up interfaces and opens sockets.
func (l *lab) set(t *testing.T, addrs ...netip.Addr) {
	t.Helper()
	if err := l.node.Do(func() error { l.speaker.Set(addrs); return nil }); err != nil {
		t.Fatal(err)
	}
}

// arpAsk sends one ARP request for a from the client with its own raw socket and returns the MAC
// answered within bound, or nil. It reads the answer itself, so the client kernel's neighbour
// table plays no part.
func (l *lab) arpAsk(t *testing.T, a netip.Addr, bound time.Duration) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName(clientDev)
		if err != nil {
			return err
		}
		c, err := arp.Dial(ifi)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetReadDeadline(time.Now().Add(bound)); err != nil {
			return err
		}
		if err := c.Request(a); err != nil {
			return err
		}
		for {
			p, _, err := c.Read()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			if err != nil {
				return err
			}
			if p.Operation == arp.OperationReply && p.SenderIP == a {
				mac = p.SenderHardwareAddr
				return nil
			}
		}
	})
	if err != nil {
		t.Fatalf("arp request for %s: %v", a, err)
	}
	return mac
}

// neighbour returns the client kernel's neighbour entry for a, or "".
func (l *lab) neighbour(t *testing.T, a netip.Addr) string {
	t.Helper()
	fam := "-4"
	if a.Is6() {
		fam = "-6"
	}
	return strings.TrimSpace(l.client.Run(t, "ip", fam, "neigh", "show", a.String(), "dev", clientDev))
}

// poke sends a datagram to a from the client, which makes its kernel resolve a (ping is not
// installed everywhere; nothing needs to answer the datagram).
func (l *lab) poke(t *testing.T, a netip.Addr) {
	t.Helper()
	c, err := l.client.DialNet("udp", netip.AddrPortFrom(a, 9).String(), 0)
	if err != nil {
		t.Fatalf("dial %s: %v", a, err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("who has"))
}

func (l *lab) metric(t *testing.T, name, family string) float64 {
	t.Helper()
	mfs, err := l.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if family != "" && (len(m.GetLabel()) == 0 || m.GetLabel()[0].GetValue() != family) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestOwnedIPv4AddressResolvesToTheNodeAndStopsWhenGivenUp(t *testing.T) {
	l := newLab(t)
	l.set(t, vip4)

	// The client's own raw ARP request is answered with the node's MAC.
	var got net.HardwareAddr
	testwait.Eventually(t, "an ARP reply for "+vip4.String(), func() bool {
		got = l.arpAsk(t, vip4, 200*time.Millisecond)
		return got != nil
	})
	if got.String() != nodeMAC {
		t.Fatalf("%s resolved to %s, want the node's %s", vip4, got, nodeMAC)
	}
	// And the client's kernel takes the answer: its neighbour entry points at the node.
	testwait.Eventually(t, "client neighbour entry for "+vip4.String(), func() bool {
		l.poke(t, vip4)
		return strings.Contains(l.neighbour(t, vip4), "lladdr "+nodeMAC)
	})
	if n := l.metric(t, "ganglion_announce_l2_addresses", ""); n != 1 {
		t.Errorf("addresses gauge %v, want 1", n)
	}
	if n := l.metric(t, "ganglion_announce_l2_replies_total", "ipv4"); n < 1 {
		t.Errorf("ipv4 replies %v, want at least 1", n)
	}
	if n := l.metric(t, "ganglion_announce_l2_gratuitous_total", "ipv4"); n < 1 {
		t.Errorf("ipv4 gratuitous %v, want at least the takeover's first", n)
	}

	// The node's own address is the kernel's to answer, with the same MAC: the link still works
	// for it, which is what makes the silence below meaningful.
	if mac := l.arpAsk(t, netip.MustParseAddr("192.168.99.2"), time.Second); mac.String() != nodeMAC {
		t.Fatalf("the node's own address resolved to %v", mac)
	}

	// Set returns with the listener closed, so no answer can come after it; the bound only
	// gives a wrong answer time to arrive.
	l.set(t)
	for range 3 {
		if mac := l.arpAsk(t, vip4, 300*time.Millisecond); mac != nil {
			t.Fatalf("%s still answered (%s) after Set(nil)", vip4, mac)
		}
	}
	if n := l.metric(t, "ganglion_announce_l2_addresses", ""); n != 0 {
		t.Errorf("addresses gauge %v after Set(nil), want 0", n)
	}
}

func TestTakeoverSendsGratuitousARPThatMovesClientEntries(t *testing.T) {
	l := newLab(t)
	l.set(t, vip4)
	// The client learnt next4 from a previous owner; no traffic goes to it, so only an
	// announcement can change the entry.
	l.client.Run(t, "ip", "neigh", "replace", next4.String(), "lladdr", otherMAC, "dev", clientDev, "nud", "stale")
	if n := l.neighbour(t, next4); !strings.Contains(n, otherMAC) {
		t.Fatalf("setup: entry %q", n)
	}

	l.set(t, vip4, next4)
	testwait.Eventually(t, "client entry for "+next4.String()+" moved to the node", func() bool {
		return strings.Contains(l.neighbour(t, next4), "lladdr "+nodeMAC)
	})

	// Each takeover is announced a few times, and an unchanged set is not announced again: a
	// takeover's first announcement goes out before Set returns, so none is seen right after.
	want := float64(2 * 3) // two takeovers, three announcements each
	testwait.Eventually(t, "the two takeovers' announcements", func() bool {
		return l.metric(t, "ganglion_announce_l2_gratuitous_total", "ipv4") == want
	})
	l.set(t, next4, vip4)
	if n := l.metric(t, "ganglion_announce_l2_gratuitous_total", "ipv4"); n != want {
		t.Errorf("gratuitous %v after setting the same addresses again, want %v", n, want)
	}
}

// ndpAsk sends one neighbour solicitation for target to dst (its solicited-node group, or the
// target itself as a client re-checking a cached entry does) from the client's link-local address
// with its own ICMPv6 socket, and returns the solicited advertisement answered within bound, or nil.
func (l *lab) ndpAsk(t *testing.T, target, dst netip.Addr, bound time.Duration) *ndp.NeighborAdvertisement {
	t.Helper()
	var got *ndp.NeighborAdvertisement
	err := l.client.Do(func() error {
		ifi, err := net.InterfaceByName(clientDev)
		if err != nil {
			return err
		}
		c, _, err := ndp.Listen(ifi, ndp.LinkLocal)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.SetReadDeadline(time.Now().Add(bound)); err != nil {
			return err
		}
		ns := &ndp.NeighborSolicitation{TargetAddress: target, Options: []ndp.Option{
			&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: ifi.HardwareAddr}}}
		if err := c.WriteTo(ns, nil, dst); err != nil {
			return err
		}
		for {
			m, _, _, err := c.ReadFrom()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			if err != nil {
				return err
			}
			// Unsolicited advertisements (a takeover's repeats) are no answer.
			if na, ok := m.(*ndp.NeighborAdvertisement); ok && na.TargetAddress == target && na.Solicited {
				got = na
				return nil
			}
		}
	})
	if err != nil {
		t.Fatalf("neighbour solicitation for %s to %s: %v", target, dst, err)
	}
	return got
}

// targetMAC is an advertisement's target link-layer address.
func targetMAC(na *ndp.NeighborAdvertisement) string {
	for _, o := range na.Options {
		if lla, ok := o.(*ndp.LinkLayerAddress); ok && lla.Direction == ndp.Target {
			return lla.Addr.String()
		}
	}
	return ""
}

func TestOwnedIPv6AddressResolvesThroughNeighbourDiscovery(t *testing.T) {
	l := newLab(t)
	l.set(t, vip6)

	// A solicitation to the address's group, as a resolving client sends, is answered: solicited,
	// overriding, with the node's MAC.
	group, err := ndp.SolicitedNodeMulticast(vip6)
	if err != nil {
		t.Fatal(err)
	}
	var na *ndp.NeighborAdvertisement
	testwait.Eventually(t, "an advertisement for "+vip6.String(), func() bool {
		na = l.ndpAsk(t, vip6, group, 200*time.Millisecond)
		return na != nil
	})
	if !na.Override || targetMAC(na) != nodeMAC {
		t.Fatalf("advertisement %+v (target MAC %s), want override, %s", na, targetMAC(na), nodeMAC)
	}
	// The client's kernel resolves it the same way.
	testwait.Eventually(t, "client neighbour entry for "+vip6.String(), func() bool {
		l.poke(t, vip6)
		return strings.Contains(l.neighbour(t, vip6), "lladdr "+nodeMAC)
	})
	// A client re-checking its entry asks the address itself, not its group; unanswered, the
	// entry would fail and the traffic meanwhile be lost.
	testwait.Eventually(t, "an answer to a unicast solicitation for "+vip6.String(), func() bool {
		na = l.ndpAsk(t, vip6, vip6, 200*time.Millisecond)
		return na != nil
	})
	if targetMAC(na) != nodeMAC {
		t.Fatalf("advertisement %+v, want target MAC %s", na, nodeMAC)
	}
	if n := l.metric(t, "ganglion_announce_l2_replies_total", "ipv6"); n < 2 {
		t.Errorf("ipv6 replies %v, want at least 2", n)
	}

	// Takeover: an entry the client holds for a previous owner moves on the unsolicited
	// advertisement alone.
	l.client.Run(t, "ip", "-6", "neigh", "replace", next6.String(), "lladdr", otherMAC, "dev", clientDev, "nud", "stale")
	l.set(t, vip6, next6)
	testwait.Eventually(t, "client entry for "+next6.String()+" moved to the node", func() bool {
		return strings.Contains(l.neighbour(t, next6), "lladdr "+nodeMAC)
	})
	if n := l.metric(t, "ganglion_announce_l2_gratuitous_total", "ipv6"); n < 2 {
		t.Errorf("ipv6 gratuitous %v, want one per takeover at least", n)
	}
	if n := l.metric(t, "ganglion_announce_l2_addresses", ""); n != 2 {
		t.Errorf("addresses gauge %v, want 2", n)
	}

	// Given up, the address is answered no more: Set returns with the sockets closed.
	l.set(t)
	if na := l.ndpAsk(t, vip6, group, 500*time.Millisecond); na != nil {
		t.Fatalf("%s still answered after Set(nil): %+v", vip6, na)
	}
}

func TestAnswersOnlyOnTheInterfaceOfTheAddressSubnet(t *testing.T) {
	l := newLab(t)
	// A second link from the node to another client, on another subnet.
	other := netlab.NewNS(t, "l2o-"+netlab.UniqueID())
	other.Run(t, "ip", "link", "add", clientDev, "type", "veth", "peer", "name", "n1", "netns", l.node.Name)
	other.Run(t, "ip", "addr", "add", "10.99.0.1/24", "dev", clientDev)
	other.Run(t, "ip", "link", "set", clientDev, "up")
	l.node.Run(t, "ip", "addr", "add", "10.99.0.2/24", "dev", "n1")
	l.node.Run(t, "ip", "link", "set", "n1", "up")
	otherLab := &lab{client: other}

	l.set(t, vip4)
	testwait.Eventually(t, "an ARP reply for "+vip4.String()+" on its subnet's link", func() bool {
		return l.arpAsk(t, vip4, 200*time.Millisecond) != nil
	})
	// The other link's listener is not even open; the bound gives a wrong answer time to come.
	if mac := otherLab.arpAsk(t, vip4, 500*time.Millisecond); mac != nil {
		t.Fatalf("%s answered on the other subnet's link with %s", vip4, mac)
	}
}

func TestServiceAddressOnAHolderDeviceIsAnsweredButNodeAddressesAreNot(t *testing.T) {
	l := newLab(t)
	// The IPVS dataplane holds service addresses on its own dummy device, which makes them local:
	// with arp_ignore=1 the kernel answers ARP only for addresses of the asking interface, so on
	// every node but the owner the address stays silent. A bridge stands in for the dummy, whose
	// driver not every kernel has; Ganglion's name is what marks it.
	const holder = "ganglion-svc0"
	l.node.Run(t, "sysctl", "-qw", "net.ipv4.conf.all.arp_ignore=1", "net.ipv4.conf.all.arp_announce=2")
	l.node.Run(t, "ip", "link", "add", holder, "type", "bridge")
	l.node.Run(t, "ip", "addr", "add", vip4.String()+"/32", "dev", holder)
	l.node.Run(t, "ip", "link", "set", holder, "up")
	if mac := l.arpAsk(t, vip4, 500*time.Millisecond); mac != nil {
		t.Fatalf("setup: the kernel answers for %s on the dummy device (%s)", vip4, mac)
	}

	l.set(t, vip4)
	testwait.Eventually(t, "an ARP reply for "+vip4.String(), func() bool {
		return l.arpAsk(t, vip4, 200*time.Millisecond) != nil
	})

	// The node's own address is the kernel's: the speaker takes no part.
	l.set(t, netip.MustParseAddr("192.168.99.2"))
	if n := l.metric(t, "ganglion_announce_l2_addresses", ""); n != 0 {
		t.Errorf("answering for %v addresses, want none for the node's own", n)
	}
}

// testWriter sends the speaker's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(bytes.TrimSpace(b)))
	return len(b), nil
}
