package l2

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"

	"github.com/mdlayher/arp"
	"github.com/mdlayher/ethernet"
	"github.com/mdlayher/packet"
)

// etherTypeARP is the EtherType the packet socket listens for.
const etherTypeARP = int(ethernet.EtherTypeARP)

// arpResponder answers ARP requests on one interface. It reads a packet socket of its own rather
// than using arp.Client, whose constructor requires an IPv4 address on the interface: a VIP
// subnet often has none on the node.
type arpResponder struct {
	listener
	conn *packet.Conn
}

var _ responder = (*arpResponder)(nil)

// openARP listens for ARP on ifi and starts answering (nothing, until update). The packet socket
// is bound to ifi at creation, so it stays in the network namespace it was opened in whatever
// thread later reads it.
func openARP(ifi net.Interface, log *slog.Logger, met *metrics) (*arpResponder, error) {
	conn, err := packet.Listen(&ifi, packet.Raw, etherTypeARP, nil)
	if err != nil {
		return nil, fmt.Errorf("arp listen on %s: %w", ifi.Name, err)
	}
	r := &arpResponder{conn: conn}
	r.init(ifi, log, met)
	go r.serve()
	return r, nil
}

func (r *arpResponder) update(addrs []netip.Addr) []netip.Addr { return swap(&r.owned, addrs) }
func (r *arpResponder) close() error                           { return r.shut(r.conn) }

// serve answers requests until the socket is closed.
func (r *arpResponder) serve() {
	defer close(r.done)
	serveFrames(r.conn, 1500, r.stop, r.log, func(frame []byte) error {
		reply, dst, ok := decideARP(frame, r.ifi.HardwareAddr, r.owned.Load())
		if !ok {
			return nil
		}
		if _, err := r.conn.WriteTo(reply, &packet.Addr{HardwareAddr: dst}); err != nil {
			return fmt.Errorf("arp reply: %w", err)
		}
		r.met.replies.WithLabelValues(family(false)).Inc()
		return nil
	})
}

// decideARP returns the Ethernet frame answering frame, and where to send it, when frame is an
// ARP request for an owned address from another host. Everything else, malformed or hostile, is
// ignored: anything that is not Ethernet/IPv4 ARP, replies, our own frames (a packet socket also
// sees what the host sends), gratuitous ARP of others (answering would only fight over the
// address), and senders with a group MAC (a reply there would be a broadcast).
func decideARP(frame []byte, mac net.HardwareAddr, owned *addrSet) (reply []byte, dst net.HardwareAddr, ok bool) {
	var f ethernet.Frame
	if err := f.UnmarshalBinary(frame); err != nil || f.EtherType != ethernet.EtherTypeARP {
		return nil, nil, false
	}
	var req arp.Packet
	if err := req.UnmarshalBinary(f.Payload); err != nil {
		return nil, nil, false
	}
	if req.HardwareType != 1 || req.ProtocolType != uint16(ethernet.EtherTypeIPv4) ||
		req.HardwareAddrLength != 6 || req.IPLength != 4 || req.Operation != arp.OperationRequest {
		return nil, nil, false
	}
	sha := req.SenderHardwareAddr
	if bytes.Equal(sha, mac) || bytes.Equal(f.Source, mac) || sha[0]&1 != 0 || isZero(sha) {
		return nil, nil, false
	}
	if req.SenderIP == req.TargetIP || !owned.has(req.TargetIP) {
		return nil, nil, false
	}
	// An ARP probe (RFC 5227: sender 0.0.0.0) is answered too, as the kernel does for its own
	// addresses: it tells a host about to take the address that it is in use.
	p, err := arp.NewPacket(arp.OperationReply, mac, req.TargetIP, sha, req.SenderIP)
	if err != nil {
		return nil, nil, false
	}
	b, err := marshalARP(p, sha, mac)
	if err != nil {
		return nil, nil, false
	}
	return b, sha, true
}

// gratuitousARP is the frame that tells a link that a is at mac: a broadcast request for a from
// a (RFC 5227's ARP announcement). Linux updates an existing neighbour entry from it (sender IP
// equal to target IP marks it gratuitous, which overrides the entry's lock time); with arp_accept
// it creates one.
func gratuitousARP(mac net.HardwareAddr, a netip.Addr) ([]byte, error) {
	p, err := arp.NewPacket(arp.OperationRequest, mac, a, make(net.HardwareAddr, 6), a)
	if err != nil {
		return nil, fmt.Errorf("gratuitous arp for %s: %w", a, err)
	}
	return marshalARP(p, ethernet.Broadcast, mac)
}

// announce broadcasts one gratuitous ARP for a.
func (r *arpResponder) announce(a netip.Addr) error {
	b, err := gratuitousARP(r.ifi.HardwareAddr, a)
	if err != nil {
		return err
	}
	if _, err := r.conn.WriteTo(b, &packet.Addr{HardwareAddr: ethernet.Broadcast}); err != nil {
		return fmt.Errorf("gratuitous arp for %s on %s: %w", a, r.ifi.Name, err)
	}
	return nil
}

// marshalARP frames p for dst.
func marshalARP(p *arp.Packet, dst, src net.HardwareAddr) ([]byte, error) {
	pb, err := p.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal arp: %w", err)
	}
	f := ethernet.Frame{Destination: dst, Source: src, EtherType: ethernet.EtherTypeARP, Payload: pb}
	b, err := f.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("marshal ethernet: %w", err)
	}
	return b, nil
}

// isZero reports an all-zero MAC, which no host has.
func isZero(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}
