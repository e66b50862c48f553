package ipvs

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// nftRule is one rule of our table in two forms built side by side: the expressions sent over
// netlink, and the text `nft list` would show, which the fake kernel keeps and tests read.
type nftRule struct {
	Text  string
	Exprs []expr.Any
}

// ruleBuilder accumulates one rule. The table is inet, so every match on an IPv4 or IPv6 header
// starts with the network-protocol check nft itself would insert.
type ruleBuilder struct {
	words []string
	ex    []expr.Any
}

func rb() *ruleBuilder { return &ruleBuilder{} }

func (b *ruleBuilder) add(text string, e ...expr.Any) *ruleBuilder {
	if text != "" {
		b.words = append(b.words, text)
	}
	b.ex = append(b.ex, e...)
	return b
}

func (b *ruleBuilder) rule() nftRule { return nftRule{Text: strings.Join(b.words, " "), Exprs: b.ex} }

// ipFamily is what differs between the IPv4 and IPv6 halves of the table.
type ipFamily struct {
	six      bool
	nfproto  byte
	word     string
	addrLen  uint32
	saddrOff uint32
	daddrOff uint32
	// next is the 32-bit register after an address loaded into NFT_REG_1.
	next uint32
}

var (
	fam4 = ipFamily{nfproto: unix.NFPROTO_IPV4, word: "ip", addrLen: 4, saddrOff: 12, daddrOff: 16, next: unix.NFT_REG32_01}
	fam6 = ipFamily{six: true, nfproto: unix.NFPROTO_IPV6, word: "ip6", addrLen: 16, saddrOff: 8, daddrOff: 24, next: unix.NFT_REG32_04}
)

func famOf(six bool) ipFamily {
	if six {
		return fam6
	}
	return fam4
}

func nativeU32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }

// nfproto is the dependency nft adds before an IP header match in an inet table.
func (b *ruleBuilder) nfproto(f ipFamily) *ruleBuilder {
	return b.add("",
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{f.nfproto}})
}

func (b *ruleBuilder) ctNew() *ruleBuilder {
	return b.add("ct state new",
		&expr.Ct{Register: unix.NFT_REG_1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: nativeU32(expr.CtStateBitNEW), Xor: nativeU32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: nativeU32(0)})
}

func (b *ruleBuilder) l4proto(p uint8) *ruleBuilder {
	return b.add("meta l4proto "+dataplane.IPProtoName(p),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{p}})
}

func (b *ruleBuilder) addrLoad(f ipFamily, field string, reg uint32) expr.Any {
	off := f.daddrOff
	if field == "saddr" {
		off = f.saddrOff
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: f.addrLen}
}

// frontendVmap dispatches a packet on destination address, protocol and port.
func (b *ruleBuilder) frontendVmap(f ipFamily, m string) *ruleBuilder {
	b.nfproto(f)
	return b.add(fmt.Sprintf("%s daddr . meta l4proto . th dport vmap @%s", f.word, m),
		b.addrLoad(f, "daddr", unix.NFT_REG_1),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: f.next},
		&expr.Payload{DestRegister: f.next + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: m, IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT})
}

// addrIn matches the source or destination address against a named set.
func (b *ruleBuilder) addrIn(f ipFamily, field, set string) *ruleBuilder {
	b.nfproto(f)
	return b.add(fmt.Sprintf("%s %s @%s", f.word, field, set),
		b.addrLoad(f, field, unix.NFT_REG_1),
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set})
}

// pairIn matches source . destination address against a named set (hairpin).
func (b *ruleBuilder) pairIn(f ipFamily, set string) *ruleBuilder {
	b.nfproto(f)
	return b.add(fmt.Sprintf("%s saddr . %s daddr @%s", f.word, f.word, set),
		b.addrLoad(f, "saddr", unix.NFT_REG_1),
		b.addrLoad(f, "daddr", f.next),
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set})
}

// saddrIn matches the source address against one prefix.
func (b *ruleBuilder) saddrIn(p netip.Prefix) *ruleBuilder {
	f := famOf(p.Addr().Is6())
	b.nfproto(f)
	mask := make([]byte, f.addrLen)
	for i := range p.Bits() {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return b.add(fmt.Sprintf("%s saddr %s", f.word, p.Masked()),
		b.addrLoad(f, "saddr", unix.NFT_REG_1),
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: f.addrLen, Mask: mask, Xor: make([]byte, f.addrLen)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: p.Masked().Addr().AsSlice()})
}

func (b *ruleBuilder) fibSaddrLocal() *ruleBuilder {
	return b.add("fib saddr type local",
		&expr.Fib{Register: unix.NFT_REG_1, FlagSADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: nativeU32(unix.RTN_LOCAL)})
}

// markOp rewrites the packet mark as (mark & and) ^ xor.
func (b *ruleBuilder) markOp(text string, and, xor uint32) *ruleBuilder {
	return b.add(text,
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4, Mask: nativeU32(and), Xor: nativeU32(xor)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: unix.NFT_REG_1})
}

// markClear matches packets without bit in their mark.
func (b *ruleBuilder) markClear(bit uint32) *ruleBuilder {
	return b.add(fmt.Sprintf("meta mark and 0x%x == 0", bit),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4, Mask: nativeU32(bit), Xor: nativeU32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: nativeU32(0)})
}

func (b *ruleBuilder) verdict(kind expr.VerdictKind, chain string) *ruleBuilder {
	words := map[expr.VerdictKind]string{expr.VerdictAccept: "accept", expr.VerdictDrop: "drop",
		expr.VerdictReturn: "return", expr.VerdictJump: "jump", expr.VerdictGoto: "goto"}
	text := words[kind]
	if chain != "" {
		text += " " + chain
	}
	return b.add(text, &expr.Verdict{Kind: kind, Chain: chain})
}

func (b *ruleBuilder) gotoChain(c string) *ruleBuilder { return b.verdict(expr.VerdictGoto, c) }
func (b *ruleBuilder) accept() *ruleBuilder            { return b.verdict(expr.VerdictAccept, "") }
func (b *ruleBuilder) drop() *ruleBuilder              { return b.verdict(expr.VerdictDrop, "") }

func (b *ruleBuilder) rejectTCPReset() *ruleBuilder {
	return b.add("reject with tcp reset", &expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
}

// rejectAny is nft's plain "reject" in an inet table: ICMP(v6) port unreachable.
func (b *ruleBuilder) rejectAny() *ruleBuilder {
	return b.add("reject", &expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_PORT_UNREACH})
}

func (b *ruleBuilder) masquerade(fully bool) *ruleBuilder {
	if fully {
		return b.add("masquerade fully-random", &expr.Masq{FullyRandom: true})
	}
	return b.add("masquerade", &expr.Masq{})
}
