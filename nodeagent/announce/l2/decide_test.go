package l2

import (
	"bytes"
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
)

var (
	nodeMAC   = net.HardwareAddr{0x02, 0, 0, 0x99, 0, 0x02}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0x99, 0, 0x01}
	vip4      = netip.MustParseAddr("192.168.99.200")
	vip6      = netip.MustParseAddr("fd00:99::200")
	client4   = netip.MustParseAddr("192.168.99.1")
	client6   = netip.MustParseAddr("fd00:99::1")
)

func set(addrs ...netip.Addr) *addrSet {
	s := addrSet{}
	for _, a := range addrs {
		s[a] = struct{}{}
	}
	return &s
}

// arpFrame builds an ARP frame with every field settable, hostile ones included.
func arpFrame(t *testing.T, mut func(f *ethernet.Frame, p *arp.Packet)) []byte {
	t.Helper()
	p, err := arp.NewPacket(arp.OperationRequest, clientMAC, client4, ethernet.Broadcast, vip4)
	if err != nil {
		t.Fatal(err)
	}
	f := ethernet.Frame{Destination: ethernet.Broadcast, Source: clientMAC, EtherType: ethernet.EtherTypeARP}
	if mut != nil {
		mut(&f, p)
	}
	f.Payload, _ = p.MarshalBinary()
	b, err := f.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// parseARP decodes a frame the package built.
func parseARP(t *testing.T, b []byte) (ethernet.Frame, arp.Packet) {
	t.Helper()
	var f ethernet.Frame
	var p arp.Packet
	if err := f.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if err := p.UnmarshalBinary(f.Payload); err != nil {
		t.Fatal(err)
	}
	return f, p
}

func TestDecideARPAnswersOnlyValidRequestsForOwnedAddresses(t *testing.T) {
	valid := arpFrame(t, nil)
	tests := []struct {
		name   string
		frame  []byte
		owned  *addrSet
		answer bool
	}{
		{"request for an owned address", valid, set(vip4), true},
		{"request for an address not owned", valid, set(netip.MustParseAddr("192.168.99.201")), false},
		{"nothing owned", valid, nil, false},
		{"ARP probe from a host checking the address", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) {
			p.SenderIP = netip.IPv4Unspecified()
		}), set(vip4), true},
		{"a reply, not a request", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) { p.Operation = arp.OperationReply }), set(vip4), false},
		{"unknown operation", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) { p.Operation = 9 }), set(vip4), false},
		{"our own frame read back", arpFrame(t, func(f *ethernet.Frame, p *arp.Packet) {
			f.Source, p.SenderHardwareAddr = nodeMAC, nodeMAC
		}), set(vip4), false},
		{"another node's gratuitous ARP for the address", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) { p.SenderIP = vip4 }), set(vip4), false},
		{"broadcast sender MAC", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) { p.SenderHardwareAddr = ethernet.Broadcast }), set(vip4), false},
		{"multicast sender MAC", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) {
			p.SenderHardwareAddr = net.HardwareAddr{0x01, 0, 0x5e, 0, 0, 1}
		}), set(vip4), false},
		{"zero sender MAC", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) { p.SenderHardwareAddr = make(net.HardwareAddr, 6) }), set(vip4), false},
		{"not Ethernet hardware", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) { p.HardwareType = 6 }), set(vip4), false},
		{"not IPv4", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) { p.ProtocolType = 0x86dd }), set(vip4), false},
		{"lying address lengths", arpFrame(t, func(_ *ethernet.Frame, p *arp.Packet) { p.HardwareAddrLength, p.IPLength = 4, 6 }), set(vip4), false},
		{"not an ARP frame", arpFrame(t, func(f *ethernet.Frame, _ *arp.Packet) { f.EtherType = ethernet.EtherTypeIPv4 }), set(vip4), false},
		{"empty", nil, set(vip4), false},
		{"truncated Ethernet header", valid[:10], set(vip4), false},
		{"truncated ARP", valid[:14+12], set(vip4), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reply, dst, ok := decideARP(tt.frame, nodeMAC, tt.owned)
			if ok != tt.answer {
				t.Fatalf("answered %v, want %v", ok, tt.answer)
			}
			if !ok {
				return
			}
			if !bytes.Equal(dst, clientMAC) {
				t.Errorf("sent to %s, want the asker %s", dst, clientMAC)
			}
			f, p := parseARP(t, reply)
			if p.Operation != arp.OperationReply || !bytes.Equal(p.SenderHardwareAddr, nodeMAC) || p.SenderIP != vip4 ||
				!bytes.Equal(p.TargetHardwareAddr, clientMAC) || !bytes.Equal(f.Source, nodeMAC) || !bytes.Equal(f.Destination, clientMAC) {
				t.Errorf("reply %+v in frame %s -> %s", p, f.Source, f.Destination)
			}
		})
	}
}

// FuzzDecideARP checks that no frame makes the decision panic; its seeds run with every test.
func FuzzDecideARP(f *testing.F) {
	f.Add([]byte{})
	f.Add(make([]byte, 14))
	p, _ := arp.NewPacket(arp.OperationRequest, clientMAC, client4, ethernet.Broadcast, vip4)
	pb, _ := p.MarshalBinary()
	fr := ethernet.Frame{Destination: ethernet.Broadcast, Source: clientMAC, EtherType: ethernet.EtherTypeARP, Payload: pb}
	b, _ := fr.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(_ *testing.T, b []byte) {
		decideARP(b, nodeMAC, set(vip4))
	})
}

func TestGratuitousARPIsABroadcastAnnouncement(t *testing.T) {
	b, err := gratuitousARP(nodeMAC, vip4)
	if err != nil {
		t.Fatal(err)
	}
	f, p := parseARP(t, b)
	if !bytes.Equal(f.Destination, ethernet.Broadcast) || p.Operation != arp.OperationRequest ||
		p.SenderIP != vip4 || p.TargetIP != vip4 || !bytes.Equal(p.SenderHardwareAddr, nodeMAC) {
		t.Errorf("gratuitous ARP %+v to %s", p, f.Destination)
	}
	// Our own announcement, read back by our socket, must not be answered.
	if _, _, ok := decideARP(b, nodeMAC, set(vip4)); ok {
		t.Error("answered our own gratuitous ARP")
	}
}

// nsFrame is an Ethernet frame carrying m from src to dst with the given hop limit, checksummed
// unless mut breaks it.
type nsFrame struct {
	ethSrc   net.HardwareAddr
	src, dst netip.Addr
	hop      byte
	m        ndp.Message
}

func (f nsFrame) bytes(t *testing.T) []byte {
	t.Helper()
	body, err := ndp.MarshalMessageChecksum(f.m, f.src, f.dst)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, ethLen+ip6Len, ethLen+ip6Len+len(body))
	copy(b[0:6], []byte{0x33, 0x33, 0xff, 0, 0x02, 0})
	copy(b[6:12], f.ethSrc)
	b[12], b[13] = 0x86, 0xdd
	b[ethLen] = 6 << 4
	b[ethLen+4], b[ethLen+5] = byte(len(body)>>8), byte(len(body))
	b[offNextHeader], b[offHopLimit] = protoICMPv6, f.hop
	s, d := f.src.As16(), f.dst.As16()
	copy(b[offSrc:], s[:])
	copy(b[offDst:], d[:])
	return append(b, body...)
}

func solicitFor(target netip.Addr) ndp.Message {
	return &ndp.NeighborSolicitation{TargetAddress: target, Options: []ndp.Option{
		&ndp.LinkLayerAddress{Direction: ndp.Source, Addr: clientMAC}}}
}

func TestDecideNDPAnswersOnlyOnLinkSolicitationsForOwnedAddresses(t *testing.T) {
	group, _ := ndp.SolicitedNodeMulticast(vip6)
	base := nsFrame{ethSrc: clientMAC, src: client6, dst: group, hop: 255, m: solicitFor(vip6)}
	with := func(mut func(f *nsFrame)) []byte {
		f := base
		mut(&f)
		return f.bytes(t)
	}
	valid := base.bytes(t)
	corrupt := func(at int) []byte {
		b := slices.Clone(valid)
		b[at] ^= 0x40
		return b
	}
	linkLocal := netip.MustParseAddr("fe80::1")
	tests := []struct {
		name      string
		frame     []byte
		owned     *addrSet
		wantDst   netip.Addr
		solicited bool
	}{
		{"to the solicited-node group, resolving", valid, set(vip6), client6, true},
		{"to the address itself, re-checking a known entry", with(func(f *nsFrame) { f.dst = vip6 }), set(vip6), client6, true},
		{"from a link-local source", with(func(f *nsFrame) { f.src = linkLocal }), set(vip6), linkLocal, true},
		{"duplicate address detection", with(func(f *nsFrame) {
			f.src, f.m = netip.IPv6Unspecified(), &ndp.NeighborSolicitation{TargetAddress: vip6}
		}), set(vip6), allNodes, false},
		{"duplicate address detection not to the group", with(func(f *nsFrame) {
			f.src, f.dst, f.m = netip.IPv6Unspecified(), vip6, &ndp.NeighborSolicitation{TargetAddress: vip6}
		}), set(vip6), netip.Addr{}, false},
		{"to another group", with(func(f *nsFrame) { f.dst = netip.MustParseAddr("ff02::1:ff00:1") }), set(vip6), netip.Addr{}, false},
		{"to another unicast address", with(func(f *nsFrame) { f.dst = netip.MustParseAddr("fd00:99::2") }), set(vip6), netip.Addr{}, false},
		{"not owned", valid, set(netip.MustParseAddr("fd00:99::201")), netip.Addr{}, false},
		{"nothing owned", valid, nil, netip.Addr{}, false},
		{"forwarded: hop limit below 255", with(func(f *nsFrame) { f.hop = 254 }), set(vip6), netip.Addr{}, false},
		{"multicast source", with(func(f *nsFrame) { f.src = allNodes }), set(vip6), netip.Addr{}, false},
		{"our own frame read back", with(func(f *nsFrame) { f.ethSrc = nodeMAC }), set(vip6), netip.Addr{}, false},
		{"an advertisement, not a solicitation", with(func(f *nsFrame) {
			f.m = &ndp.NeighborAdvertisement{TargetAddress: vip6}
		}), set(vip6), netip.Addr{}, false},
		{"bad checksum", corrupt(len(valid) - 1), set(vip6), netip.Addr{}, false},
		{"not IPv6 in the EtherType", corrupt(12), set(vip6), netip.Addr{}, false},
		{"IP version not 6", corrupt(ethLen), set(vip6), netip.Addr{}, false},
		{"payload length past the frame", corrupt(ethLen + 4), set(vip6), netip.Addr{}, false},
		{"truncated in the IPv6 header", valid[:ethLen+20], set(vip6), netip.Addr{}, false},
		{"truncated in the message", valid[:len(valid)-4], set(vip6), netip.Addr{}, false},
		{"Ethernet header only", valid[:ethLen], set(vip6), netip.Addr{}, false},
		{"empty", nil, set(vip6), netip.Addr{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			na, dst, ok := decideNDP(tt.frame, nodeMAC, tt.owned)
			if ok != tt.wantDst.IsValid() {
				t.Fatalf("answered %v, want %v", ok, tt.wantDst.IsValid())
			}
			if !ok {
				return
			}
			if dst != tt.wantDst || na.Solicited != tt.solicited || !na.Override || na.Router || na.TargetAddress != vip6 {
				t.Errorf("advertisement %+v to %s", na, dst)
			}
			if len(na.Options) != 1 {
				t.Fatalf("options %v, want the target link-layer address", na.Options)
			}
			if lla, ok := na.Options[0].(*ndp.LinkLayerAddress); !ok || lla.Direction != ndp.Target || !bytes.Equal(lla.Addr, nodeMAC) {
				t.Errorf("option %+v, want target link-layer address %s", na.Options[0], nodeMAC)
			}
			if _, err := ndp.MarshalMessage(na); err != nil {
				t.Errorf("advertisement does not marshal: %v", err)
			}
		})
	}
}

func TestNSFilterPassesOnlyOnLinkSolicitations(t *testing.T) {
	prog, err := nsFilter()
	if err != nil {
		t.Fatal(err)
	}
	insts := make([]bpf.Instruction, len(prog))
	for i, r := range prog {
		insts[i] = r.Disassemble()
	}
	vm, err := bpf.NewVM(insts)
	if err != nil {
		t.Fatal(err)
	}
	group, _ := ndp.SolicitedNodeMulticast(vip6)
	base := nsFrame{ethSrc: clientMAC, src: client6, dst: group, hop: 255, m: solicitFor(vip6)}
	udp := base.bytes(t)
	udp[offNextHeader] = 17
	forwarded := base
	forwarded.hop = 64
	na := base
	na.m = &ndp.NeighborAdvertisement{TargetAddress: vip6}
	for _, tt := range []struct {
		name  string
		frame []byte
		pass  bool
	}{
		{"solicitation", base.bytes(t), true},
		{"advertisement", na.bytes(t), false},
		{"forwarded solicitation", forwarded.bytes(t), false},
		{"UDP", udp, false},
		{"runt", []byte{1, 2, 3}, false},
	} {
		n, err := vm.Run(tt.frame)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if (n > 0) != tt.pass {
			t.Errorf("%s: passed %d bytes, want pass=%v", tt.name, n, tt.pass)
		}
	}
}

// FuzzDecideNDP checks that no frame makes the decision panic; its seeds run with every test.
func FuzzDecideNDP(f *testing.F) {
	group, _ := ndp.SolicitedNodeMulticast(vip6)
	body, _ := ndp.MarshalMessageChecksum(solicitFor(vip6), client6, group)
	frame := make([]byte, ethLen+ip6Len)
	frame[12], frame[13], frame[ethLen], frame[offNextHeader], frame[offHopLimit] = 0x86, 0xdd, 0x60, protoICMPv6, 255
	frame[ethLen+5] = byte(len(body))
	f.Add(append(frame, body...))
	f.Add([]byte{})
	f.Add(frame)
	f.Fuzz(func(_ *testing.T, b []byte) {
		decideNDP(b, nodeMAC, set(vip6))
	})
}

func TestChoosePlacesAddressesOnTheirSubnetElseTheDefaultRoute(t *testing.T) {
	snap := snapshot{
		links: []link{
			{ifi: net.Interface{Name: "eth0"}, prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.5/24"), netip.MustParsePrefix("fd00:1::5/64")}},
			{ifi: net.Interface{Name: "eth1"}, prefixes: []netip.Prefix{netip.MustParsePrefix("192.168.99.2/24")}},
			{ifi: net.Interface{Name: "eth2"}, prefixes: []netip.Prefix{netip.MustParsePrefix("192.168.99.3/24"), netip.MustParsePrefix("203.0.113.7/32")}},
			{ifi: net.Interface{Name: "vlan9"}},
		},
		default4: "eth0", default6: "eth0",
	}
	tests := []struct {
		name string
		a    string
		only []string
		want []string
	}{
		{"on one subnet", "10.0.0.200", nil, []string{"eth0"}},
		{"on a subnet two interfaces share", "192.168.99.200", nil, []string{"eth1", "eth2"}},
		{"on no subnet: the default route", "198.51.100.1", nil, []string{"eth0"}},
		{"a host prefix is no subnet", "203.0.113.8", nil, []string{"eth0"}},
		{"IPv6 on its subnet", "fd00:1::200", nil, []string{"eth0"}},
		{"IPv6 on no subnet: the IPv6 default route", "fd00:2::200", nil, []string{"eth0"}},
		{"restricted: the listed interface on the subnet", "192.168.99.200", []string{"eth2", "vlan9"}, []string{"eth2"}},
		{"restricted, on none of their subnets: every listed interface", "198.51.100.1", []string{"vlan9"}, []string{"vlan9"}},
		{"restricted to an interface that is not there", "198.51.100.1", []string{"eth7"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := snap.choose(netip.MustParseAddr(tt.a), tt.only); !slices.Equal(got, tt.want) {
				t.Errorf("choose(%s, %v) = %v, want %v", tt.a, tt.only, got, tt.want)
			}
		})
	}
	if got := (snapshot{}).choose(vip4, nil); got != nil {
		t.Errorf("no interfaces and no default route: %v, want none", got)
	}
}

func TestPlanLeavesOutTheNodesOwnAddresses(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot{
		links: []link{{ifi: net.Interface{Name: "eth1"}, prefixes: []netip.Prefix{netip.MustParsePrefix("192.168.99.2/24")}}},
		own:   map[netip.Addr]string{netip.MustParseAddr("192.168.99.2"): "eth1"},
	}
	got := s.plan(snap, []netip.Addr{vip4, netip.MustParseAddr("192.168.99.2"), vip4, netip.MustParseAddr("::ffff:192.168.99.201")})
	want := map[key][]netip.Addr{{name: "eth1"}: {vip4, netip.MustParseAddr("192.168.99.201")}}
	if len(got) != 1 || !slices.Equal(got[key{name: "eth1"}], want[key{name: "eth1"}]) {
		t.Errorf("plan = %v, want %v", got, want)
	}
}

func TestNormalizeKeepsResolvableAddressesOnce(t *testing.T) {
	in := []netip.Addr{
		vip6, vip4, netip.MustParseAddr("::ffff:192.168.99.200"), {}, netip.IPv4Unspecified(),
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("ff02::1"), netip.MustParseAddr("fe80::1%eth0"),
		netip.MustParseAddr("255.255.255.255"), netip.MustParseAddr("fd00:99::200%eth0"),
	}
	if got, want := normalize(in), []netip.Addr{vip4, vip6}; !slices.Equal(got, want) {
		t.Errorf("normalize = %v, want %v", got, want)
	}
}
