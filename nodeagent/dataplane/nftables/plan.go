package nftables

import (
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// opKind is what one operation of a plan does to a table.
type opKind uint8

// The operations a plan is made of, one netlink message each (element batches: one per chunk).
const (
	opAddTable opKind = iota
	opAddChain
	opFlushChain
	opDelChain
	opAddSet
	opDelSet
	opAddRule
	opAddElems
	opDelElems
)

// op is one typed operation on a family's table.
type op struct {
	kind opKind
	// name is the chain or set the operation is about.
	name string
	// chain describes the chain to add (hook, type, priority for a base chain); nil for a
	// regular chain.
	chain *skeletonChain
	set   *nftables.Set
	rule  rule
	elems []nftables.SetElement
	// omitted counts the elements a kept plan left out (Plan.kept).
	omitted int
}

// messages is how many netlink messages the operation takes.
func (o op) messages() int {
	if o.kind == opAddElems || o.kind == opDelElems {
		return (len(o.elems) + elemChunk - 1) / elemChunk
	}
	return 1
}

// familyPlan is what one transaction does to one family's table, and what the view becomes once
// the kernel accepted it.
type familyPlan struct {
	t   *familyTable
	ops []op
	// next is the view as the plan leaves it; commit applies it after the kernel's yes.
	next *planned
	// cleanups run after the kernel accepted the transaction (UDP conntrack).
	cleanups []conntrackJob
}

// Plan is one transaction over both families: the exact operations, in the order they are sent.
// Planning never changes the dataplane's view of the kernel; committing a plan does, once the
// kernel accepted it.
type Plan struct {
	fams []*familyPlan
}

// empty reports whether the plan sends nothing.
func (p *Plan) empty() bool {
	for _, fp := range p.fams {
		if len(fp.ops) > 0 {
			return false
		}
	}
	return true
}

// messages is how many netlink messages the plan takes.
func (p *Plan) messages() int {
	n := 0
	for _, fp := range p.fams {
		for _, o := range fp.ops {
			n += o.messages()
		}
	}
	return n
}

// lastPlanElems is how many elements a plan kept for /debug/plan holds. A full sync of 10,000
// services is about 100,000 elements, 14 MiB held until the next commit only to be printed.
const lastPlanElems = 2000

// kept returns the plan as /debug/plan keeps it: its operations, with at most lastPlanElems
// elements in all (each operation keeps a count of those it left out), and nothing of the view.
func (p *Plan) kept() *Plan {
	budget := lastPlanElems
	out := &Plan{fams: make([]*familyPlan, len(p.fams))}
	for i, fp := range p.fams {
		ops := slices.Clone(fp.ops)
		for j := range ops {
			if n := len(ops[j].elems); n > budget {
				ops[j].elems, ops[j].omitted = slices.Clone(ops[j].elems[:budget]), n-budget
			}
			budget -= len(ops[j].elems)
		}
		out.fams[i] = &familyPlan{t: fp.t, ops: ops}
	}
	return out
}

// String writes the plan in nft's syntax, one operation per line (elements one per line too).
func (p *Plan) String() string {
	var b strings.Builder
	for _, fp := range p.fams {
		for _, o := range fp.ops {
			writeOp(&b, fp.t, fp.t.f, o)
		}
	}
	return b.String()
}

// writeOp writes one operation; t, when given, supplies the set types elements are decoded by.
func writeOp(b *strings.Builder, t *familyTable, f *family, o op) {
	tbl := f.word + " " + TableName
	switch o.kind {
	case opAddTable:
		fmt.Fprintf(b, "add table %s\n", tbl)
	case opAddChain:
		fmt.Fprintf(b, "add chain %s %s%s\n", tbl, o.name, chainSpec(o.chain))
	case opFlushChain:
		fmt.Fprintf(b, "flush chain %s %s\n", tbl, o.name)
	case opDelChain:
		fmt.Fprintf(b, "delete chain %s %s\n", tbl, o.name)
	case opAddSet:
		fmt.Fprintf(b, "add %s %s %s { %s }\n", setWord(o.set), tbl, o.name, strings.Join(setSpec(o.set), "; "))
	case opDelSet:
		fmt.Fprintf(b, "delete set %s %s\n", tbl, o.name)
	case opAddRule:
		fmt.Fprintf(b, "add rule %s %s %s\n", tbl, o.name, o.rule.text)
	case opAddElems, opDelElems:
		verb := "add"
		if o.kind == opDelElems {
			verb = "delete"
		}
		var def *nftables.Set
		if t != nil {
			def = t.setDef(o.name)
		}
		lines := make([]string, len(o.elems))
		for i, e := range o.elems {
			lines[i] = fmt.Sprintf("%s element %s %s { %s }\n", verb, tbl, o.name, formatElem(def, e, verdictOf(e)))
		}
		slices.Sort(lines)
		b.WriteString(strings.Join(lines, ""))
		if o.omitted > 0 {
			fmt.Fprintf(b, "# %s %d more elements of %s %s (not kept)\n", verb, o.omitted, tbl, o.name)
		}
	}
}

// chainSpec writes a base chain's hook as nft does in braces; nothing for a regular chain.
func chainSpec(c *skeletonChain) string {
	if c == nil || c.hook == nil {
		return ""
	}
	return fmt.Sprintf(" { type %s hook %s priority %d; policy accept; }", c.typ, hookName(*c.hook), int32(*c.priority))
}

func hookName(h nftables.ChainHook) string {
	switch h {
	case *nftables.ChainHookPrerouting:
		return "prerouting"
	case *nftables.ChainHookInput:
		return "input"
	case *nftables.ChainHookForward:
		return "forward"
	case *nftables.ChainHookOutput:
		return "output"
	case *nftables.ChainHookPostrouting:
		return "postrouting"
	}
	return fmt.Sprintf("hook%d", h)
}

func verdictOf(e nftables.SetElement) string {
	if e.VerdictData == nil {
		return ""
	}
	return e.VerdictData.Chain
}

// setDef finds the declaration of a set by name, for decoding its elements; nil if unknown.
func (t *familyTable) setDef(name string) *nftables.Set {
	for _, s := range t.skel.sets {
		if s.Name == name {
			return s
		}
	}
	if c, ok := parseClassSet(name); ok {
		s, _ := classSetDef(t.f, c)
		return s
	}
	if _, _, ok := parseObjectName(name); ok {
		return affinitySet(t.f, name)
	}
	return nil
}
