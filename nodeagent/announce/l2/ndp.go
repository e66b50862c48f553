package l2

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/mdlayher/ndp"
	"github.com/mdlayher/packet"
	"golang.org/x/net/ipv6"
)

// allNodes is where unsolicited advertisements and answers to duplicate address detection go.
var allNodes = netip.MustParseAddr("ff02::1")

// ndpResponder answers neighbour solicitations on one interface. It reads them from a packet
// socket, not from the NDP socket: solicitations come to the target's solicited-node group while
// a client resolves, but to the target address itself when the client re-checks a known entry
// (neighbour unreachability detection), and the kernel delivers the latter to no ICMPv6 socket,
// since the address is not the node's (or, on Ganglion's dummy device, not the interface's). Left
// unanswered, those checks fail a client's entry each time it has gone stale and is used again,
// and the packets sent meanwhile are lost. The NDP socket sends the answers and holds the group
// memberships.
type ndpResponder struct {
	listener
	conn *ndp.Conn
	pc   *packet.Conn
	// groups counts owned addresses per solicited-node group joined: distinct addresses share a
	// group when their low 24 bits match, and the group is left only when the last one goes. Only
	// update touches it, under the Speaker's lock.
	groups map[netip.Addr]int
}

var _ responder = (*ndpResponder)(nil)

// openNDP listens for neighbour solicitations on ifi and answers from its link-local address
// (the source routers expect of an on-link neighbour). Both sockets are bound to the interface at
// creation, so they stay in the network namespace they were opened in whatever thread uses them.
func openNDP(ifi net.Interface, log *slog.Logger, met *metrics) (*ndpResponder, error) {
	conn, _, err := ndp.Listen(&ifi, ndp.LinkLocal)
	if err != nil {
		return nil, fmt.Errorf("ndp listen on %s: %w", ifi.Name, err)
	}
	// Nothing is read from this socket: a filter passing nothing keeps its queue empty.
	var f ipv6.ICMPFilter
	f.SetAll(true)
	if err := conn.SetICMPFilter(&f); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("ndp filter on %s: %w", ifi.Name, err)
	}
	filter, err := nsFilter()
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	pc, err := packet.Listen(&ifi, packet.Raw, etherTypeIPv6, &packet.Config{Filter: filter})
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("ndp packet listen on %s: %w", ifi.Name, err)
	}
	r := &ndpResponder{conn: conn, pc: pc, groups: map[netip.Addr]int{}}
	r.init(ifi, log, met)
	go r.serve()
	return r, nil
}

// update joins the solicited-node groups of new addresses and leaves those of gone ones: a
// solicitation for an address goes to its group, which the link delivers only to members.
func (r *ndpResponder) update(addrs []netip.Addr) []netip.Addr {
	want := map[netip.Addr]int{}
	for _, a := range addrs {
		if g, err := ndp.SolicitedNodeMulticast(a); err == nil {
			want[g]++
		}
	}
	for g := range want {
		if r.groups[g] > 0 {
			continue
		}
		if err := r.conn.JoinGroup(g); err != nil {
			// Solicitations for the group's addresses go unheard until a later Set joins it.
			r.log.Error("l2: join solicited-node group", "group", g, "err", err)
			delete(want, g)
		}
	}
	for g := range r.groups {
		if want[g] == 0 {
			if err := r.conn.LeaveGroup(g); err != nil {
				r.log.Warn("l2: leave solicited-node group", "group", g, "err", err)
			}
		}
	}
	r.groups = want
	return swap(&r.owned, addrs)
}

// close closes both sockets; closing the NDP socket leaves its groups.
func (r *ndpResponder) close() error { return r.shut(r.pc, r.conn) }

// serve answers solicitations until the socket is closed.
func (r *ndpResponder) serve() {
	defer close(r.done)
	serveFrames(r.pc, max(r.ifi.MTU, 1280)+ethLen, r.stop, r.log, func(frame []byte) error {
		na, dst, ok := decideNDP(frame, r.ifi.HardwareAddr, r.owned.Load())
		if !ok {
			return nil
		}
		if err := r.conn.WriteTo(na, nil, dst); err != nil {
			return fmt.Errorf("neighbour advertisement: %w", err)
		}
		r.met.replies.WithLabelValues(family(true)).Inc()
		return nil
	})
}

// decideNDP returns the advertisement answering frame, and where to send it, when frame is a
// valid on-link solicitation for an owned address (RFC 4861 7.1.1, 7.2.4): to its source,
// solicited; to all nodes, unsolicited, when the source is unspecified (duplicate address
// detection by a host about to take the address, told it is in use). Override is set: this node
// is the address's one owner, and a takeover must replace entries pointing at the previous one.
// Malformed frames, forwarded ones (hop limit below 255), our own (a packet socket also sees what
// the host sends) and solicitations not addressed to the target or its group are ignored.
func decideNDP(frame []byte, mac net.HardwareAddr, owned *addrSet) (*ndp.NeighborAdvertisement, netip.Addr, bool) {
	if len(frame) < ethLen || bytes.Equal(frame[6:12], mac) {
		return nil, netip.Addr{}, false
	}
	s, ok := parseSolicitation(frame)
	if !ok || s.hopLimit != ndp.HopLimit {
		return nil, netip.Addr{}, false
	}
	ns, ok := s.msg.(*ndp.NeighborSolicitation)
	if !ok || !owned.has(ns.TargetAddress) || s.src.IsMulticast() {
		return nil, netip.Addr{}, false
	}
	group, err := ndp.SolicitedNodeMulticast(ns.TargetAddress)
	if err != nil || (s.dst != group && s.dst != ns.TargetAddress) || (s.src.IsUnspecified() && s.dst != group) {
		return nil, netip.Addr{}, false
	}
	na := advertisement(ns.TargetAddress, mac)
	if s.src.IsUnspecified() {
		return na, allNodes, true
	}
	na.Solicited = true
	return na, s.src, true
}

// advertisement is an unsolicited, overriding advertisement of a at mac.
func advertisement(a netip.Addr, mac net.HardwareAddr) *ndp.NeighborAdvertisement {
	return &ndp.NeighborAdvertisement{
		Override:      true,
		TargetAddress: a,
		Options:       []ndp.Option{&ndp.LinkLayerAddress{Direction: ndp.Target, Addr: mac}},
	}
}

// announce sends one unsolicited advertisement of a to all nodes: Linux replaces the MAC of an
// existing entry from it (override set) and leaves the entry stale, so the next packet confirms it.
func (r *ndpResponder) announce(a netip.Addr) error {
	if err := r.conn.WriteTo(advertisement(a, r.ifi.HardwareAddr), nil, allNodes); err != nil {
		return fmt.Errorf("unsolicited advertisement for %s on %s: %w", a, r.ifi.Name, err)
	}
	return nil
}
