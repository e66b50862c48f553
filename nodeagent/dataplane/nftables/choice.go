package nftables

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// maxSlots bounds the numgen map of one endpoint set: weights are scaled down to fit, so a set
// with unusual weights never costs more than this many map elements.
const maxSlots = 256

// backend is one resolved endpoint.
type backend struct {
	addr   netip.Addr
	port   uint32
	weight uint32
}

// slots expands backends into numgen slots in proportion to their weights. Weight 0 drains a
// backend (no new connections) unless every weight is 0, which means "unweighted".
func slots(bs []backend) []int {
	var sum uint64
	for _, b := range bs {
		sum += uint64(b.weight)
	}
	if sum == 0 {
		out := make([]int, len(bs))
		for i := range bs {
			out[i] = i
		}
		return out
	}
	g := uint32(0)
	for _, b := range bs {
		g = gcd(g, b.weight)
	}
	units := make([]uint64, len(bs))
	var total uint64
	for i, b := range bs {
		units[i] = uint64(b.weight / g)
		total += units[i]
	}
	if total > maxSlots {
		total = 0
		for i, b := range bs {
			if b.weight == 0 {
				units[i] = 0
				continue
			}
			units[i] = max(1, uint64(b.weight)*maxSlots/sum)
			total += units[i]
		}
	}
	out := make([]int, 0, total)
	for i, u := range units {
		for range u {
			out = append(out, i)
		}
	}
	return out
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// backendMap builds the anonymous numgen → address . port map and its text.
func backendMap(f *family, bs []backend) (*anonMap, string, int, error) {
	dataType, err := nftables.ConcatSetType(f.addrType, nftables.TypeInetService)
	if err != nil {
		return nil, "", 0, fmt.Errorf("concat type: %w", err)
	}
	idx := slots(bs)
	m := &anonMap{keyType: nftables.TypeInteger, dataType: dataType}
	var text strings.Builder
	for n, i := range idx {
		b := bs[i]
		val := append(f.addr(b.addr), padPort(b.port)...)
		m.elems = append(m.elems, nftables.SetElement{Key: nativeU32(uint32(n)), Val: val})
		if n > 0 {
			text.WriteString(", ")
		}
		fmt.Fprintf(&text, "%d : %s . %d", n, f.addrText(b.addr), b.port)
	}
	return m, text.String(), len(idx), nil
}

// dnat chooses a backend with numgen and rewrites the destination to it.
func (b *builder) dnat(proto byte, bs []backend) (*builder, error) {
	m, elems, n, err := backendMap(b.f, bs)
	if err != nil {
		return nil, err
	}
	b.l4proto(proto)
	b.anon = m
	m.lookup = &expr.Lookup{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, IsDestRegSet: true}
	b.ex = append(b.ex, &expr.Numgen{Register: unix.NFT_REG_1, Modulus: uint32(n), Type: unix.NFT_NG_RANDOM}, m.lookup)
	return b.add(fmt.Sprintf("dnat %s to numgen random mod %d map { %s }", b.f.word, n, elems), b.natFromReg1()), nil
}

// numgenVmap jumps to one of chains, chosen by numgen in proportion to the backends' weights.
// Session affinity needs it: nft can only display a recorded choice that is a constant, so each
// backend gets its own small chain that records itself.
func (b *builder) numgenVmap(bs []backend, chains []string) *builder {
	idx := slots(bs)
	m := &anonMap{keyType: nftables.TypeInteger, dataType: nftables.TypeVerdict, verdict: true}
	var text strings.Builder
	for n, i := range idx {
		m.elems = append(m.elems, nftables.SetElement{Key: nativeU32(uint32(n)),
			VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chains[i]}})
		if n > 0 {
			text.WriteString(", ")
		}
		fmt.Fprintf(&text, "%d : goto %s", n, chains[i])
	}
	b.anon = m
	m.lookup = &expr.Lookup{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_VERDICT, IsDestRegSet: true}
	b.ex = append(b.ex, &expr.Numgen{Register: unix.NFT_REG_1, Modulus: uint32(len(idx)), Type: unix.NFT_NG_RANDOM}, m.lookup)
	return b.add(fmt.Sprintf("numgen random mod %d vmap { %s }", len(idx), text.String()))
}

// dnatRecorded records this backend as the client's choice in the affinity map, then DNATs to it.
func (b *builder) dnatRecorded(proto byte, be backend, affinity string, timeout time.Duration) *builder {
	b.l4proto(proto)
	target := fmt.Sprintf("%s . %d", b.f.addrText(be.addr), be.port)
	return b.add(fmt.Sprintf("update @%s { %s saddr timeout %s : %s } dnat %s to %s", affinity, b.f.word, timeout, target, b.f.word, target),
		&expr.Payload{DestRegister: unix.NFT_REG_3, Base: expr.PayloadBaseNetworkHeader, Offset: b.f.saddrOff, Len: b.f.addrLen},
		&expr.Immediate{Register: unix.NFT_REG_1, Data: b.f.addr(be.addr)},
		&expr.Immediate{Register: b.f.afterAddr, Data: padPort(be.port)[:2]},
		&expr.Dynset{SrcRegKey: unix.NFT_REG_3, SrcRegData: unix.NFT_REG_1, SetName: affinity, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: timeout},
		b.natFromReg1())
}

// dnatSticky rewrites the destination to the backend this client was sent to before, if any.
func (b *builder) dnatSticky(proto byte, affinity string) *builder {
	b.l4proto(proto)
	return b.add(fmt.Sprintf("dnat %s to %s saddr map @%s", b.f.word, b.f.word, affinity),
		&expr.Payload{DestRegister: unix.NFT_REG_3, Base: expr.PayloadBaseNetworkHeader, Offset: b.f.saddrOff, Len: b.f.addrLen},
		&expr.Lookup{SourceRegister: unix.NFT_REG_3, DestRegister: unix.NFT_REG_1, IsDestRegSet: true, SetName: affinity},
		b.natFromReg1())
}

// natFromReg1 is a DNAT to the address . port concatenation held in NFT_REG_1.
func (b *builder) natFromReg1() *expr.NAT {
	return &expr.NAT{Type: expr.NATTypeDestNAT, Family: b.f.nfproto,
		RegAddrMin: unix.NFT_REG_1, RegAddrMax: unix.NFT_REG_1,
		RegProtoMin: b.f.afterAddr, RegProtoMax: b.f.afterAddr, Specified: true}
}

// affinitySet describes a per-set session affinity map: client address → backend. Entries carry
// their own timeout (set by the rule), so a changed timeout changes a rule, never the set.
func affinitySet(f *family, name string, timeout time.Duration) (*nftables.Set, error) {
	dataType, err := nftables.ConcatSetType(f.addrType, nftables.TypeInetService)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	return &nftables.Set{Name: name, KeyType: f.addrType, DataType: dataType, IsMap: true,
		HasTimeout: true, Dynamic: true, Timeout: timeout}, nil
}
