package nftables

import (
	"encoding/binary"
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

// Endpoint choice. Endpoint sets keep their backends in a few interval maps shared by all
// ports, keyed by id<<slotBits | slot: a set's chain draws a slot with numgen and the set's id as
// offset, and backends own intervals of slots in proportion to their weights. A set lives in
// bucket id % endpointBuckets.
//
// Why, measured on this kernel with 10,000 services: a change of backends then changes only map
// elements. A changed rule makes the kernel re-validate the whole table on commit (about 4 ms);
// a per-port named map is found by a linear search of the table's sets on every change (about
// 30 ns per set); and an interval map's commit costs time in proportion to its size (7 ms for one
// map of 200,000 elements). Buckets created first, each a few hundred elements, keep all three
// small.
const (
	slotBits        = 12
	slotCount       = 1 << slotBits
	maxSetID        = 1<<(32-slotBits) - 1
	endpointBuckets = 16
)

// bucketOf names the endpoint map that holds set id.
func bucketOf(id uint32) string { return fmt.Sprintf("%s-%02x", setEndpoints, id%endpointBuckets) }

// endpointElems splits the slots of set id among backends by weight. Interval maps take each
// interval as a start element with the data and an end element holding end+1.
func endpointElems(f *family, id uint32, bs []backend) []nftables.SetElement {
	idx := slots(bs)
	if len(idx) == 0 {
		return nil
	}
	share := map[int]uint64{}
	for _, i := range idx {
		share[i]++
	}
	total, cum := uint64(len(idx)), uint64(0)
	base := uint64(id) << slotBits
	var out []nftables.SetElement
	start := uint64(0)
	for i, b := range bs {
		if share[i] == 0 {
			continue
		}
		cum += share[i]
		end := cum * slotCount / total // exclusive
		if end == start {
			continue
		}
		out = append(out,
			nftables.SetElement{Key: beU32(uint32(base + start)), Val: append(f.addr(b.addr), padPort(b.port)...)},
			nftables.SetElement{Key: beU32(uint32(base + end)), IntervalEnd: true})
		start = end
	}
	return out
}

func beU32(v uint32) []byte {
	b := make([]byte, 4)
	binary.BigEndian.PutUint32(b, v)
	return b
}

// dnat rewrites the destination to a backend of set id. A miss (the set has no backend) falls
// through to the chain's next rule.
func (b *builder) dnat(proto byte, id uint32) *builder {
	b.l4proto(proto)
	b.id = id
	return b.add(fmt.Sprintf("dnat %s to numgen random mod %d offset %d map @%s", b.f.word, slotCount, id<<slotBits, bucketOf(id)),
		&expr.Numgen{Register: unix.NFT_REG_1, Modulus: slotCount, Type: unix.NFT_NG_RANDOM, Offset: id << slotBits},
		&expr.Byteorder{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Op: expr.ByteorderHton, Len: 4, Size: 4},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, IsDestRegSet: true, SetName: bucketOf(id)},
		b.natFromReg1())
}

// numgenVmap jumps to one of chains, chosen by numgen in proportion to the backends' weights.
// Session affinity needs it: each backend has a chain that records the client in that backend's
// own set (nft can display a recorded constant, not a value read from a map).
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

// dnatRecorded adds the client to (or refreshes it in) this backend's affinity set, then DNATs
// to the backend.
func (b *builder) dnatRecorded(proto byte, be backend, affinity string, timeout time.Duration) *builder {
	b.l4proto(proto)
	target := fmt.Sprintf("%s . %d", b.f.addrText(be.addr), be.port)
	return b.add(fmt.Sprintf("update @%s { %s saddr timeout %s } dnat %s to %s", affinity, b.f.word, timeout, b.f.word, target),
		&expr.Payload{DestRegister: unix.NFT_REG_3, Base: expr.PayloadBaseNetworkHeader, Offset: b.f.saddrOff, Len: b.f.addrLen},
		&expr.Dynset{SrcRegKey: unix.NFT_REG_3, SetName: affinity, Operation: unix.NFT_DYNSET_OP_UPDATE, Timeout: timeout},
		&expr.Immediate{Register: unix.NFT_REG_1, Data: b.f.addr(be.addr)},
		&expr.Immediate{Register: b.f.afterAddr, Data: padPort(be.port)[:2]},
		b.natFromReg1())
}

// natFromReg1 is a DNAT to the address . port concatenation held in NFT_REG_1.
func (b *builder) natFromReg1() *expr.NAT {
	return &expr.NAT{Type: expr.NATTypeDestNAT, Family: b.f.nfproto,
		RegAddrMin: unix.NFT_REG_1, RegAddrMax: unix.NFT_REG_1,
		RegProtoMin: b.f.afterAddr, RegProtoMax: b.f.afterAddr, Specified: true}
}

// affinitySet describes one backend's session affinity set: the clients sent to it. A set per
// backend, as kube-proxy keeps, lets a backend that leaves take only its own clients' choices
// with it. Entries carry their own timeout (set by the rule), so a changed timeout changes a
// rule, never the set.
func affinitySet(f *family, name string) *nftables.Set {
	return &nftables.Set{Name: name, KeyType: f.addrType, HasTimeout: true, Dynamic: true}
}
