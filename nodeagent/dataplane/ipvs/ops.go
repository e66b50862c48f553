package ipvs

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// ipvsOpKind is what one IPVS or device operation of a plan does.
type ipvsOpKind uint8

const (
	// opAddAddr puts a service address on our device (replacing it when present); opDelAddr
	// removes one (absent is fine).
	opAddAddr ipvsOpKind = iota + 1
	opDelAddr
	// opNewService creates a virtual server the view says is absent.
	opNewService
	// opEnsureService is for a virtual server while the view is unknown: create it, or adopt the
	// one present (rewrite its settings, read its real servers) and bring its reals to Want.
	opEnsureService
	opUpdateService
	// opDelService deletes a virtual server with its real servers (and, for UDP, its flows).
	opDelService
	// opNewDest adds a real server (one that turns out present is updated instead).
	opNewDest
	// opUpdateDest sets a real server's weight and ends its draining.
	opUpdateDest
	// opDrainDest sets weight 0 (unless already 0) and starts draining: the drain loop deletes it.
	opDrainDest
	// opDelDest deletes a UDP real server at once, with its conntrack flows.
	opDelDest
)

var ipvsOpNames = map[ipvsOpKind]string{
	opAddAddr: "add-addr", opDelAddr: "del-addr", opNewService: "new-service", opEnsureService: "ensure-service",
	opUpdateService: "update-service", opDelService: "del-service", opNewDest: "new-dest",
	opUpdateDest: "update-dest", opDrainDest: "drain-dest", opDelDest: "del-dest",
}

// ipvsOp is one IPVS or device operation of a plan. Which fields count depends on Kind.
type ipvsOp struct {
	Kind   ipvsOpKind
	Key    vsKey
	Spec   vsSpec
	Real   netip.AddrPort
	Weight int
	Addr   netip.Addr
	// Want is what opEnsureService, and opNewService when the server turns out to exist, bring
	// the virtual server to.
	Want *vsPlan
}

// String writes the operation the way plans print it.
func (o ipvsOp) String() string {
	name := "ipvs " + ipvsOpNames[o.Kind]
	switch o.Kind {
	case opAddAddr, opDelAddr:
		return name + " " + o.Addr.String()
	case opNewService, opUpdateService, opEnsureService:
		return fmt.Sprintf("%s %s %s", name, o.Key, o.Spec)
	case opDelService:
		return fmt.Sprintf("%s %s", name, o.Key)
	case opNewDest, opUpdateDest:
		return fmt.Sprintf("%s %s %s w=%d", name, o.Key, o.Real, o.Weight)
	}
	return fmt.Sprintf("%s %s %s", name, o.Key, o.Real)
}

// String writes a virtual server's settings compactly: "rr", "rr persistent 60s".
func (s vsSpec) String() string {
	if s.Flags&ipvsPersistent != 0 {
		return fmt.Sprintf("%s persistent %ds", s.Sched, s.Timeout)
	}
	return s.Sched
}

// portStep is what one port of a change needs, in commit order: the nftables marks of ownership
// first (one transaction for all ports), then the operations on existing IPVS objects one at a
// time, then the creations sent in bulk. Want is recorded as applied when all succeed; Remove
// forgets the port instead; a step with neither (orphans) records nothing.
type portStep struct {
	Base   string
	Want   *portPlan
	Remove bool
	NFT    []nftOp
	Now    []ipvsOp
	Create []ipvsOp
}

// Plan is the exact kernel operations of one change, derived from the change and the view alone
// (planApply, planPrune, planReconcile); commit executes it and updates the view from what the
// kernel confirmed. Steps run in order; a failed step stops only itself.
type Plan struct {
	// Refused are ports refused while planning: invalid, or claiming another port's server.
	Refused map[string]error
	Steps   []portStep
}

// tidyPlan removes marks of ownership and addresses nothing uses any more. It is planned from
// the view after a commit, because what may go depends on what the kernel confirmed: a frontend
// element goes only once its virtual server is known gone.
type tidyPlan struct {
	NFT      []nftOp
	DelAddrs []netip.Addr
	// Settled are the loose ends decided (removed, or in use again); the others stay loose.
	Settled looseEnds
}

// String prints the plan, one operation a line, under each port.
func (p Plan) String() string {
	var b strings.Builder
	for _, base := range slices.Sorted(maps.Keys(p.Refused)) {
		fmt.Fprintf(&b, "refuse %s: %v\n", base, p.Refused[base])
	}
	for _, s := range p.Steps {
		verb := "port"
		switch {
		case s.Remove:
			verb = "remove"
		case s.Want == nil:
			verb = "step"
		}
		fmt.Fprintf(&b, "%s %s\n%s%s", verb, s.Base, joinOps(s.NFT), joinOps(s.Now))
		for _, o := range s.Create {
			fmt.Fprintf(&b, "  bulk %s\n", o)
		}
	}
	return b.String()
}

// String prints the tidy plan.
func (t tidyPlan) String() string {
	var b strings.Builder
	b.WriteString("tidy\n")
	b.WriteString(joinOps(t.NFT))
	for _, a := range t.DelAddrs {
		fmt.Fprintf(&b, "  ipvs del-addr %s\n", a)
	}
	return b.String()
}
