package ipvs

import (
	"fmt"
	"net/netip"
	"strings"
)

// nftOpKind is what one nftables operation of a plan does.
type nftOpKind uint8

const (
	// nftBase creates the table, its sets and maps, and rewrites the fixed chains whole.
	nftBase nftOpKind = iota + 1
	// nftPodCIDRs rewrites the pod-cidrs sets.
	nftPodCIDRs
	// nftFlush empties the element sets and frontend maps (the full rewrite of Reconcile).
	nftFlush
	// nftAddFrontend writes a frontend element; a restricted one gets its source-range chain,
	// rewritten unless the state is Unknown (kept as an earlier run left it).
	nftAddFrontend
	// nftDelFrontend deletes a frontend element, and its source-range chain when restricted.
	nftDelFrontend
	// nftAddAddr and nftDelAddr add and remove a service address of svc-addrs; a removal of one
	// already absent succeeds.
	nftAddAddr
	nftDelAddr
	// nftAddHairpin and nftDelHairpin add and remove a local endpoint of the hairpin sets; a
	// removal of one already absent succeeds.
	nftAddHairpin
	nftDelHairpin
)

// nftOp is one nftables operation of a plan. Which fields count depends on Kind.
type nftOp struct {
	Kind     nftOpKind
	Key      vsKey          // frontends
	State    feState        // nftAddFrontend; nftDelFrontend reads Verdict.Restricted
	Addr     netip.Addr     // addresses and hairpins
	Mark     uint32         // nftBase
	PodCIDRs []netip.Prefix // nftPodCIDRs
}

// String writes the operation the way plans print it.
func (o nftOp) String() string {
	switch o.Kind {
	case nftBase:
		return fmt.Sprintf("nft base mark=0x%x", o.Mark)
	case nftPodCIDRs:
		return fmt.Sprintf("nft pod-cidrs %v", o.PodCIDRs)
	case nftFlush:
		return "nft flush elements"
	case nftAddFrontend:
		return fmt.Sprintf("nft add fe %s %s", o.Key, o.State)
	case nftDelFrontend:
		return fmt.Sprintf("nft del fe %s %s", o.Key, o.State)
	case nftAddAddr:
		return "nft add svc-addr " + o.Addr.String()
	case nftDelAddr:
		return "nft del svc-addr " + o.Addr.String()
	case nftAddHairpin:
		return "nft add hairpin " + o.Addr.String()
	case nftDelHairpin:
		return "nft del hairpin " + o.Addr.String()
	}
	return fmt.Sprintf("nft op %d", o.Kind)
}

// target is the chain a frontend element in state s jumps to.
func (s feState) target(k vsKey) string {
	if s.Verdict.Restricted {
		return srChain(k)
	}
	return s.Verdict.Chain
}

// String writes the state as the element and its chain do: "goto fwd-masq", or
// "goto sr-… [10.0.0.0/8] -> fwd-masq".
func (s feState) String() string {
	v := s.Verdict
	if !v.Restricted {
		return "goto " + v.Chain
	}
	if s.Unknown {
		return "goto sr-(adopted)"
	}
	return fmt.Sprintf("goto sr [%s] -> %s", v.Ranges, v.Chain)
}

func joinOps[T fmt.Stringer](ops []T) string {
	var b strings.Builder
	for _, o := range ops {
		b.WriteString("  ")
		b.WriteString(o.String())
		b.WriteByte('\n')
	}
	return b.String()
}

// feState is a frontend element as the kernel holds it. Unknown marks an element an earlier run
// left that jumps to its source-range chain, whose rules were not read back: it never equals a
// wanted state, so the first Apply rewrites it.
type feState struct {
	Verdict verdict
	Unknown bool
}
