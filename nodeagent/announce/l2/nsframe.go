package l2

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/mdlayher/ndp"
	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv6"
)

// Offsets in an Ethernet frame carrying IPv6 with ICMPv6 right after the fixed header, as
// neighbour solicitations always are.
const (
	etherTypeIPv6 = 0x86dd
	ethLen        = 14
	ip6Len        = 40
	offNextHeader = ethLen + 6
	offHopLimit   = ethLen + 7
	offSrc        = ethLen + 8
	offDst        = ethLen + 24
	offICMPType   = ethLen + ip6Len
	protoICMPv6   = 58
)

// nsFilter passes only on-link neighbour solicitations to the packet socket, so the responder
// wakes for nothing else of the link's IPv6 traffic. The kernel applies it before bind, so no
// other frame is ever queued.
func nsFilter() ([]bpf.RawInstruction, error) {
	prog, err := bpf.Assemble([]bpf.Instruction{
		bpf.LoadAbsolute{Off: offNextHeader, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: protoICMPv6, SkipTrue: 5},
		bpf.LoadAbsolute{Off: offICMPType, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: uint32(ipv6.ICMPTypeNeighborSolicitation), SkipTrue: 3},
		bpf.LoadAbsolute{Off: offHopLimit, Size: 1},
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: ndp.HopLimit, SkipTrue: 1},
		bpf.RetConstant{Val: 0xffff},
		bpf.RetConstant{Val: 0},
	})
	if err != nil {
		return nil, fmt.Errorf("assemble solicitation filter: %w", err)
	}
	return prog, nil
}

// solicitation is what decideNDP needs of a received frame.
type solicitation struct {
	src, dst netip.Addr
	hopLimit int
	msg      ndp.Message
}

// parseSolicitation decodes an Ethernet frame into its IPv6 addresses, hop limit and ICMPv6
// message, checking every length and the ICMPv6 checksum: the frame is whatever the link sent.
// It reports false for anything malformed.
func parseSolicitation(frame []byte) (solicitation, bool) {
	if len(frame) < ethLen+ip6Len || binary.BigEndian.Uint16(frame[12:14]) != etherTypeIPv6 ||
		frame[ethLen]>>4 != 6 || frame[offNextHeader] != protoICMPv6 {
		return solicitation{}, false
	}
	plen := int(binary.BigEndian.Uint16(frame[ethLen+4 : ethLen+6]))
	if plen < 4 || ethLen+ip6Len+plen > len(frame) {
		return solicitation{}, false
	}
	src := netip.AddrFrom16([16]byte(frame[offSrc : offSrc+16]))
	dst := netip.AddrFrom16([16]byte(frame[offDst : offDst+16]))
	body := frame[ethLen+ip6Len : ethLen+ip6Len+plen]
	if !icmp6ChecksumOK(src, dst, body) {
		return solicitation{}, false
	}
	m, err := ndp.ParseMessage(body)
	if err != nil {
		return solicitation{}, false
	}
	return solicitation{src: src, dst: dst, hopLimit: int(frame[offHopLimit]), msg: m}, true
}

// icmp6ChecksumOK verifies an ICMPv6 message's checksum over the IPv6 pseudo-header (RFC 4443
// 2.3), which the kernel has not checked for a packet socket.
func icmp6ChecksumOK(src, dst netip.Addr, body []byte) bool {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	s, d := src.As16(), dst.As16()
	add(s[:])
	add(d[:])
	sum += uint32(len(body)) + protoICMPv6
	add(body)
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}
