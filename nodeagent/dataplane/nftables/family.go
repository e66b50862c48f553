package nftables

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// family holds what differs between the IPv4 and the IPv6 table: address sizes and offsets, and
// the 32-bit registers that follow an address loaded into NFT_REG_1.
type family struct {
	v6        bool
	table     nftables.TableFamily
	nfproto   uint32
	word      string // "ip" or "ip6", as nft writes it
	addrLen   uint32
	addrType  nftables.SetDatatype
	saddrOff  uint32
	daddrOff  uint32
	afterAddr uint32 // first 32-bit register after an address loaded into NFT_REG_1
	rejectTyp uint32
	rejectCod uint8
}

var (
	familyV4 = &family{
		table: nftables.TableFamilyIPv4, nfproto: unix.NFPROTO_IPV4, word: "ip",
		addrLen: 4, addrType: nftables.TypeIPAddr, saddrOff: 12, daddrOff: 16,
		afterAddr: unix.NFT_REG32_01, rejectTyp: unix.NFT_REJECT_ICMP_UNREACH, rejectCod: 3, // port unreachable
	}
	familyV6 = &family{
		v6: true, table: nftables.TableFamilyIPv6, nfproto: unix.NFPROTO_IPV6, word: "ip6",
		addrLen: 16, addrType: nftables.TypeIP6Addr, saddrOff: 8, daddrOff: 24,
		afterAddr: unix.NFT_REG32_04, rejectTyp: unix.NFT_REJECT_ICMP_UNREACH, rejectCod: 4, // port unreachable
	}
)

// familyOf picks the table family of a service port.
func familyOf(f v1.IPFamily) *family {
	if f == v1.IPFamily_IP_FAMILY_IPV6 {
		return familyV6
	}
	return familyV4
}

// has reports whether a belongs to this family; IPv4-mapped IPv6 addresses count as IPv4.
func (f *family) has(a netip.Addr) bool { return a.Unmap().Is4() != f.v6 }

// addr encodes an address in network byte order.
func (f *family) addr(a netip.Addr) []byte {
	a = a.Unmap()
	if f.v6 {
		b := a.As16()
		return b[:]
	}
	b := a.As4()
	return b[:]
}

// addrText writes an address as nft reads it in a concatenation.
func (f *family) addrText(a netip.Addr) string {
	if f.v6 {
		return "[" + a.String() + "]"
	}
	return a.String()
}

// padPort is a port as it sits in a concatenation: big endian, padded to a register.
func padPort(p uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint16(b, uint16(p))
	return b
}

// padProto is an IP protocol number padded to a register.
func padProto(p byte) []byte { return []byte{p, 0, 0, 0} }
