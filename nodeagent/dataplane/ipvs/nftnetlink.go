package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftgen"
)

// nftNetlink is nftKernel on the kernel, over netlink. Its socket is opened once, in the network
// namespace of the thread that called newNFTNetlink.
type nftNetlink struct {
	cc *nftables.Conn
	// genNL reads the ruleset generation (google/nftables v0.3.0 cannot).
	genNL *netlink.Conn
	table *nftables.Table
	sets  map[string]*nftables.Set
	// pending gathers element operations between two chain or set operations, so a transaction
	// of thousands of elements is a few messages (and acknowledgements), not thousands.
	pending elemRuns
}

var _ nftKernel = (*nftNetlink)(nil)

// elemRuns are element operations gathered per set, in the order sets were first met. Within a
// set removals are sent before additions, which keeps the only order plans rely on: an element
// replaced is removed, then added.
type elemRuns struct {
	order []*nftables.Set
	add   map[*nftables.Set][]nftables.SetElement
	del   map[*nftables.Set][]nftables.SetElement
}

// maxElemsPerMessage keeps an element list under the 64 KiB a netlink attribute can describe
// (the library would silently truncate its length): an IPv6 frontend element is about 72 bytes.
const maxElemsPerMessage = 512

func newNFTNetlink() (*nftNetlink, error) {
	cc, err := openConn()
	if err != nil {
		return nil, err
	}
	t := &nftables.Table{Name: tableName, Family: nftables.TableFamilyINet}
	sets, err := tableSets(t)
	if err != nil {
		_ = cc.CloseLasting()
		return nil, err
	}
	genNL, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		_ = cc.CloseLasting()
		return nil, fmt.Errorf("nftables netlink for the generation: %w", err)
	}
	return &nftNetlink{cc: cc, genNL: genNL, table: t, sets: sets}, nil
}

// Generation reads the ruleset generation: one round trip.
func (n *nftNetlink) Generation() (uint32, error) { return nftgen.Read(n.genNL) }

func openConn() (*nftables.Conn, error) {
	cc, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		// Room for a full sync's transaction and its acknowledgements.
		return forceBuffers(c, 4<<20, 16<<20)
	}))
	if err != nil {
		return nil, fmt.Errorf("nftables netlink: %w", err)
	}
	return cc, nil
}

// forceBuffers raises the socket buffers past the system limits; the agent runs privileged.
func forceBuffers(c *netlink.Conn, rcv, snd int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("syscall conn: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcv),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd))
	}); err != nil {
		return fmt.Errorf("socket control: %w", err)
	}
	if serr != nil && !errors.Is(serr, unix.EPERM) {
		return fmt.Errorf("socket buffers: %w", serr)
	}
	return nil
}

func (n *nftNetlink) close() error { return errors.Join(n.cc.CloseLasting(), n.genNL.Close()) }

func sortedSetNames(m map[string]*nftables.Set) []string {
	out := make([]string, 0, len(m))
	for name := range m {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

// tableSets declares the table's sets and maps for both families.
func tableSets(t *nftables.Table) (map[string]*nftables.Set, error) {
	out := map[string]*nftables.Set{}
	for _, six := range []bool{false, true} {
		addr, s := nftables.TypeIPAddr, suffix(six)
		if six {
			addr = nftables.TypeIP6Addr
		}
		pair, err := nftables.ConcatSetType(addr, addr)
		if err != nil {
			return nil, fmt.Errorf("hairpin%s type: %w", s, err)
		}
		fe, err := nftables.ConcatSetType(addr, nftables.TypeInetProto, nftables.TypeInetService)
		if err != nil {
			return nil, fmt.Errorf("fe%s type: %w", s, err)
		}
		out[setSvcAddrs+s] = &nftables.Set{Table: t, Name: setSvcAddrs + s, KeyType: addr}
		out[setPodCIDRs+s] = &nftables.Set{Table: t, Name: setPodCIDRs + s, KeyType: addr, Interval: true}
		out[setHairpin+s] = &nftables.Set{Table: t, Name: setHairpin + s, KeyType: pair, Concatenation: true}
		out[mapFrontend+s] = &nftables.Set{Table: t, Name: mapFrontend + s, KeyType: fe, DataType: nftables.TypeVerdict, IsMap: true, Concatenation: true}
	}
	return out, nil
}

// Commit sends ops as one netlink batch, which the kernel applies atomically.
func (n *nftNetlink) Commit(ops []nftOp) error {
	for _, o := range ops {
		if o.Kind < nftBase || o.Kind > nftDelHairpin {
			return fmt.Errorf("nftables: operation kind %d unknown", o.Kind)
		}
	}
	for _, o := range ops {
		if err := n.emit(o); err != nil {
			n.discard()
			return err
		}
	}
	if err := n.endRun(); err != nil {
		n.discard()
		return err
	}
	if err := n.cc.Flush(); err != nil {
		return fmt.Errorf("nftables transaction: %w", err)
	}
	return nil
}

// discard drops a half-built transaction. The library has no way to forget queued messages
// except sending them, so the connection is replaced; the new one is opened in the calling
// thread's network namespace, which is the agent's.
func (n *nftNetlink) discard() {
	n.pending = elemRuns{}
	_ = n.cc.CloseLasting()
	if cc, err := openConn(); err == nil {
		n.cc = cc
	}
}

func (n *nftNetlink) emit(o nftOp) error {
	switch o.Kind {
	case nftBase:
		return n.emitBase(o.Mark)
	case nftPodCIDRs:
		return n.emitPodCIDRs(o.PodCIDRs)
	case nftFlush:
		if err := n.endRun(); err != nil {
			return err
		}
		for _, s := range []string{setSvcAddrs, setHairpin, mapFrontend} {
			n.cc.FlushSet(n.sets[s+"4"])
			n.cc.FlushSet(n.sets[s+"6"])
		}
		return nil
	case nftAddFrontend:
		return n.emitAddFrontend(o.Key, o.State)
	case nftDelFrontend:
		if err := n.elem(mapFrontend+famSuffix(o.Key.Addr), true, nftables.SetElement{Key: feKeyBytes(o.Key)}); err != nil {
			return err
		}
		if o.State.Verdict.Restricted {
			if err := n.endRun(); err != nil {
				return err
			}
			n.cc.DelChain(&nftables.Chain{Table: n.table, Name: srChain(o.Key)})
		}
		return nil
	case nftAddAddr, nftDelAddr:
		return n.elem(setSvcAddrs+famSuffix(o.Addr), o.Kind == nftDelAddr, nftables.SetElement{Key: o.Addr.AsSlice()})
	default: // nftAddHairpin, nftDelHairpin: Commit checked the kinds
		return n.elem(setHairpin+famSuffix(o.Addr), o.Kind == nftDelHairpin, nftables.SetElement{Key: append(o.Addr.AsSlice(), o.Addr.AsSlice()...)})
	}
}

// elem gathers one element operation.
func (n *nftNetlink) elem(set string, del bool, e nftables.SetElement) error {
	s, r := n.sets[set], &n.pending
	if r.add == nil {
		r.add, r.del = map[*nftables.Set][]nftables.SetElement{}, map[*nftables.Set][]nftables.SetElement{}
	}
	if _, ok := r.add[s]; !ok {
		r.order = append(r.order, s)
		r.add[s] = nil
	}
	if del {
		r.del[s] = append(r.del[s], e)
	} else {
		r.add[s] = append(r.add[s], e)
	}
	return nil
}

// endRun queues the gathered element operations, up to maxElemsPerMessage a message. A removal
// from a set is preceded by adding the same elements, so removing one already absent does not
// fail the batch; frontend removals are exact.
func (n *nftNetlink) endRun() error {
	r := n.pending
	n.pending = elemRuns{}
	for _, s := range r.order {
		if dels := r.del[s]; len(dels) > 0 {
			if !s.IsMap {
				if err := n.chunked(s, dels, n.cc.SetAddElements); err != nil {
					return err
				}
			}
			if err := n.chunked(s, dels, n.cc.SetDeleteElements); err != nil {
				return err
			}
		}
		if err := n.chunked(s, r.add[s], n.cc.SetAddElements); err != nil {
			return err
		}
	}
	return nil
}

func (n *nftNetlink) chunked(s *nftables.Set, elems []nftables.SetElement, send func(*nftables.Set, []nftables.SetElement) error) error {
	for start := 0; start < len(elems); start += maxElemsPerMessage {
		if err := send(s, elems[start:min(start+maxElemsPerMessage, len(elems))]); err != nil {
			return fmt.Errorf("nftables %s: %w", s.Name, err)
		}
	}
	return nil
}

// emitBase creates the table and its sets, then rewrites the fixed chains: every chain first, so
// the rules' gotos find their targets.
func (n *nftNetlink) emitBase(mark uint32) error {
	if err := n.endRun(); err != nil {
		return err
	}
	n.cc.AddTable(n.table)
	for _, name := range sortedSetNames(n.sets) {
		if err := n.cc.AddSet(n.sets[name], nil); err != nil {
			return fmt.Errorf("nftables set %s: %w", name, err)
		}
	}
	chains := fixedChains(mark)
	for _, c := range chains {
		ch := n.chain(c.Name, c.Hook)
		n.cc.AddChain(ch)
		n.cc.FlushChain(ch)
	}
	for _, c := range chains {
		n.addRules(c.Name, c.Rules)
	}
	return nil
}

func (n *nftNetlink) addRules(chain string, rules []nftRule) {
	ch := &nftables.Chain{Table: n.table, Name: chain}
	for _, r := range rules {
		n.cc.AddRule(&nftables.Rule{Table: n.table, Chain: ch, Exprs: r.Exprs})
	}
}

func (n *nftNetlink) chain(name string, h hookKind) *nftables.Chain {
	c := &nftables.Chain{Table: n.table, Name: name}
	switch h {
	case hookInput:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeFilter, nftables.ChainHookInput, nftables.ChainPriorityFilter
	case hookOutput:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeFilter, nftables.ChainHookOutput, nftables.ChainPriorityMangle
	case hookPostrouting:
		c.Type, c.Hooknum, c.Priority = nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource
	}
	return c
}

func (n *nftNetlink) emitPodCIDRs(ps []netip.Prefix) error {
	if err := n.endRun(); err != nil {
		return err
	}
	n.cc.FlushSet(n.sets[setPodCIDRs+"4"])
	n.cc.FlushSet(n.sets[setPodCIDRs+"6"])
	for _, p := range ps {
		if err := n.cc.SetAddElements(n.sets[setPodCIDRs+famSuffix(p.Addr())], intervalElems(p)); err != nil {
			return fmt.Errorf("nftables pod-cidrs %s: %w", p, err)
		}
	}
	return nil
}

// intervalElems is a prefix as an interval set holds it: its first address, and the address
// after its last marked as the end (absent when the prefix reaches the end of the space).
func intervalElems(p netip.Prefix) []nftables.SetElement {
	p = p.Masked()
	out := []nftables.SetElement{{Key: p.Addr().AsSlice()}}
	last := lastAddr(p)
	if next := last.Next(); next.IsValid() {
		out = append(out, nftables.SetElement{Key: next.AsSlice(), IntervalEnd: true})
	}
	return out
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (n *nftNetlink) emitAddFrontend(k vsKey, st feState) error {
	if st.Verdict.Restricted {
		if err := n.endRun(); err != nil {
			return err
		}
		ch := &nftables.Chain{Table: n.table, Name: srChain(k)}
		n.cc.AddChain(ch)
		if !st.Unknown {
			n.cc.FlushChain(ch)
			n.addRules(ch.Name, srRules(st.Verdict))
		}
	}
	return n.elem(mapFrontend+famSuffix(k.Addr), false, nftables.SetElement{
		Key: feKeyBytes(k), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: st.target(k)}})
}

// feKeyBytes is a frontend key as the map holds it: address, then protocol and port each padded
// to a 32-bit register.
func feKeyBytes(k vsKey) []byte {
	b := k.Addr.AsSlice()
	b = append(b, byte(k.Proto), 0, 0, 0)
	return append(b, byte(k.Port>>8), byte(k.Port), 0, 0)
}

// feKeyFromBytes is the inverse of feKeyBytes; ok is false for a key of any other shape.
func feKeyFromBytes(b []byte) (vsKey, bool) {
	var n int
	switch len(b) {
	case 4 + 8:
		n = 4
	case 16 + 8:
		n = 16
	default:
		return vsKey{}, false
	}
	a, _ := netip.AddrFromSlice(b[:n])
	return vsKey{Proto: uint16(b[n]), Addr: a, Port: uint16(b[n+4])<<8 | uint16(b[n+5])}, true
}

// Frontends reads both frontend maps.
func (n *nftNetlink) Frontends() (map[vsKey]string, error) {
	out := map[vsKey]string{}
	for _, s := range []string{mapFrontend + "4", mapFrontend + "6"} {
		elems, err := n.cc.GetSetElements(n.sets[s])
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", s, err)
		}
		for _, e := range elems {
			k, ok := feKeyFromBytes(e.Key)
			if chain := verdictChain(e.Val); ok && chain != "" {
				out[k] = chain
			}
		}
	}
	return out, nil
}

// Hairpins reads both hairpin sets.
func (n *nftNetlink) Hairpins() ([]netip.Addr, error) {
	var out []netip.Addr
	for _, s := range []string{setHairpin + "4", setHairpin + "6"} {
		elems, err := n.cc.GetSetElements(n.sets[s])
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", s, err)
		}
		for _, e := range elems {
			if a, ok := netip.AddrFromSlice(e.Key[:len(e.Key)/2]); ok {
				out = append(out, a)
			}
		}
	}
	return out, nil
}

// verdictChain reads the chain of a goto or jump verdict from a map element's data, which the
// library leaves undecoded (NFTA_VERDICT_CODE, NFTA_VERDICT_CHAIN); "" for anything else.
func verdictChain(b []byte) string {
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return ""
	}
	var chain string
	for ad.Next() {
		if ad.Type() == unix.NFTA_VERDICT_CHAIN {
			chain = ad.String()
		}
	}
	if ad.Err() != nil {
		return ""
	}
	return chain
}
