package nftables

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"net/netip"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// rule is one nftables rule in two forms built side by side: the expressions sent over netlink,
// and nft-like text. The text names everything the expressions do, so its hash identifies the
// rule: it is stored in the rule's comment, which is how Reconcile and a restarted agent compare
// the kernel's rules with the wanted ones without decoding expressions.
type rule struct {
	text  string
	exprs []expr.Any
	// anon is an anonymous constant map the rule's lookup uses; it is created just before the rule.
	anon *anonMap
	// id is the endpoint set id the rule draws from, 0 if none. It is kept in the rule's comment
	// after the hash, so a restarted agent finds every set's id again.
	id uint32
}

// anonMap is an anonymous constant map: numgen value → backend address and port.
type anonMap struct {
	keyType  nftables.SetDatatype
	dataType nftables.SetDatatype
	elems    []nftables.SetElement
	verdict  bool
	// lookup is the rule's expression that reads the map; it learns the map's name and ID each
	// time the rule is sent, because anonymous maps are named per transaction.
	lookup *expr.Lookup
}

// hash identifies the rule's content; it is what the rule's comment holds.
func (r rule) hash() string {
	h := fnv.New64a()
	h.Write([]byte(r.text))
	return fmt.Sprintf("%016x", h.Sum64())
}

// comment is what the rule's comment holds: its hash, and its endpoint set id if any.
func (r rule) comment() string {
	if r.id == 0 {
		return r.hash()
	}
	return fmt.Sprintf("%s id=%d", r.hash(), r.id)
}

// parseComment splits a rule comment into the rule's hash and endpoint set id.
func parseComment(c string) (hash string, id uint32) {
	hash, rest, _ := strings.Cut(c, " ")
	if v, ok := strings.CutPrefix(rest, "id="); ok {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil {
			id = uint32(n)
		}
	}
	return hash, id
}

// builder accumulates one rule's expressions and text.
type builder struct {
	f     *family
	words []string
	ex    []expr.Any
	anon  *anonMap
	id    uint32
}

func newRule(f *family) *builder { return &builder{f: f} }

func (b *builder) add(text string, e ...expr.Any) *builder {
	b.words = append(b.words, text)
	b.ex = append(b.ex, e...)
	return b
}

func (b *builder) build() rule {
	return rule{text: strings.Join(b.words, " "), exprs: b.ex, anon: b.anon, id: b.id}
}

// l4proto matches the transport protocol.
func (b *builder) l4proto(p byte) *builder {
	return b.add("meta l4proto "+dataplane.IPProtoName(p),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: []byte{p}})
}

// saddrIn matches the source address against a prefix.
func (b *builder) saddrIn(p netip.Prefix) *builder {
	p = p.Masked()
	mask := make([]byte, b.f.addrLen)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	return b.add(fmt.Sprintf("%s saddr %s", b.f.word, p),
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: b.f.saddrOff, Len: b.f.addrLen},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: b.f.addrLen, Mask: mask, Xor: make([]byte, b.f.addrLen)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: b.f.addr(p.Addr())})
}

// addrInSet matches the source or destination address against a named set.
func (b *builder) addrInSet(field, set string) *builder {
	off := b.f.daddrOff
	if field == "saddr" {
		off = b.f.saddrOff
	}
	return b.add(fmt.Sprintf("%s %s @%s", b.f.word, field, set),
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: b.f.addrLen},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set})
}

// fibSaddrLocal matches packets whose source address is one of this host's.
func (b *builder) fibSaddrLocal() *builder {
	return b.add("fib saddr type local",
		&expr.Fib{Register: unix.NFT_REG_1, FlagSADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: nativeU32(unix.RTN_LOCAL)})
}

// ctNew matches the first packet of a connection.
func (b *builder) ctNew() *builder {
	return b.add("ct state new",
		&expr.Ct{Register: unix.NFT_REG_1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: nativeU32(expr.CtStateBitNEW), Xor: nativeU32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: nativeU32(0)})
}

// markSet matches packets carrying bit in their mark.
func (b *builder) markSet(bit uint32) *builder {
	return b.add(fmt.Sprintf("meta mark & 0x%x != 0", bit),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: nativeU32(bit), Xor: nativeU32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: nativeU32(0)})
}

// setMark ORs bit into the packet mark.
func (b *builder) setMark(bit uint32) *builder {
	return b.add(fmt.Sprintf("meta mark set mark | 0x%x", bit),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: nativeU32(^bit), Xor: nativeU32(bit)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: unix.NFT_REG_1})
}

// clearMark removes bit from the packet mark, so a packet that is routed again is not
// masqueraded twice.
func (b *builder) clearMark(bit uint32) *builder {
	return b.add(fmt.Sprintf("meta mark set mark & 0x%x", ^bit),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: unix.NFT_REG_1},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4,
			Mask: nativeU32(^bit), Xor: nativeU32(0)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: unix.NFT_REG_1})
}

// frontendVmap dispatches on destination address, protocol and port.
func (b *builder) frontendVmap(set string) *builder {
	return b.add(fmt.Sprintf("%s daddr . meta l4proto . th dport vmap @%s", b.f.word, set),
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: b.f.daddrOff, Len: b.f.addrLen},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: b.f.afterAddr},
		&expr.Payload{DestRegister: b.f.afterAddr + 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set, IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT})
}

// portVmap dispatches on protocol and destination port.
func (b *builder) portVmap(set string) *builder {
	return b.add(fmt.Sprintf("meta l4proto . th dport vmap @%s", set),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG32_00},
		&expr.Payload{DestRegister: unix.NFT_REG32_01, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set, IsDestRegSet: true, DestRegister: unix.NFT_REG_VERDICT})
}

// addrPairInSet matches source . destination address against a set (hairpin detection).
func (b *builder) addrPairInSet(set string) *builder {
	second := uint32(unix.NFT_REG32_01)
	if b.f.v6 {
		second = unix.NFT_REG_2
	}
	return b.add(fmt.Sprintf("%s saddr . %s daddr @%s", b.f.word, b.f.word, set),
		&expr.Payload{DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: b.f.saddrOff, Len: b.f.addrLen},
		&expr.Payload{DestRegister: second, Base: expr.PayloadBaseNetworkHeader, Offset: b.f.daddrOff, Len: b.f.addrLen},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set})
}

func (b *builder) jump(chain string) *builder {
	return b.add("jump "+chain, &expr.Verdict{Kind: expr.VerdictJump, Chain: chain})
}

func (b *builder) gotoChain(chain string) *builder {
	return b.add("goto "+chain, &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain})
}

func (b *builder) ret() *builder { return b.add("return", &expr.Verdict{Kind: expr.VerdictReturn}) }

func (b *builder) drop() *builder { return b.add("drop", &expr.Verdict{Kind: expr.VerdictDrop}) }

func (b *builder) reject() *builder {
	return b.add("reject", &expr.Reject{Type: b.f.rejectTyp, Code: b.f.rejectCod})
}

func (b *builder) masquerade() *builder {
	return b.add("masquerade fully-random", &expr.Masq{FullyRandom: true})
}

// nativeU32 encodes a value the way the kernel keeps meta, ct and numgen results: host order.
func nativeU32(v uint32) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, v)
	return b
}
