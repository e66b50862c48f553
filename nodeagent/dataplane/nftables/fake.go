package nftables

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftgen"
)

// Fake is an in-memory nf_tables for this backend's tables. It applies the operations of a plan
// as the kernel would, all of a transaction or none, with the kernel's refusals for what the
// kernel refuses (a missing object, a chain or set another object refers to, an element of the wrong size or
// already there with other data); it is read back like the kernel for Reconcile and restarts, and
// Dump writes what it holds in `nft list table` syntax. Use it through WithFake.
type Fake struct {
	mu     sync.Mutex
	tables map[nftables.TableFamily]*fakeTable
	// forgotten lists the conntrack deletions asked for, in nft-like text.
	forgotten []string
	// gen is the ruleset generation: every transaction that commits moves it, ours and Run's.
	gen uint32
	// dumps counts the table reads (readState starts each with chains), for tests of drift
	// repair's cost; beforeDump, when set, runs before each, outside the lock (tests block on it).
	dumps      int
	beforeDump func()
}

type fakeTable struct {
	chains map[string]*fakeChain
	sets   map[string]*fakeSet
}

type fakeChain struct {
	def   *skeletonChain // hook, type and priority of a base chain; nil otherwise
	rules []fakeRule
}

type fakeRule struct {
	text, comment string
	chains, sets  []string // what the rule refers to
}

type fakeSet struct {
	def   nftables.Set
	elems map[string]fakeElem // by elemID
}

type fakeElem struct {
	e     nftables.SetElement
	chain string
}

// NewFake returns an empty fake kernel.
func NewFake() *Fake { return &Fake{tables: map[nftables.TableFamily]*fakeTable{}, gen: 1} }

// bump moves the generation as a committed transaction does; the kernel skips 0. Under k.mu.
func (k *Fake) bump() { k.gen = nftgen.Next(k.gen) }

func (k *Fake) generation() (uint32, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.gen, nil
}

func elemID(e nftables.SetElement) string { return fmt.Sprintf("%x/%t", e.Key, e.IntervalEnd) }

func (t *fakeTable) clone() *fakeTable {
	c := &fakeTable{chains: map[string]*fakeChain{}, sets: map[string]*fakeSet{}}
	for n, ch := range t.chains {
		c.chains[n] = &fakeChain{def: ch.def, rules: slices.Clone(ch.rules)}
	}
	for n, s := range t.sets {
		c.sets[n] = &fakeSet{def: s.def, elems: maps.Clone(s.elems)}
	}
	return c
}

// commit applies every family's operations to copies and keeps them only if all succeed.
func (k *Fake) commit(p *Plan) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	next := map[nftables.TableFamily]*fakeTable{}
	for f, t := range k.tables {
		next[f] = t.clone()
	}
	for _, fp := range p.fams {
		for i, o := range fp.ops {
			if err := applyOp(next, fp.t.f, o); err != nil {
				return fmt.Errorf("fake kernel: operation %d (%s): %w", i, strings.TrimSpace(opText(fp.t.f, o)), err)
			}
		}
	}
	k.tables = next
	k.bump()
	return nil
}

// opText names an operation for an error message: elements are counted, not listed.
func opText(f *family, o op) string {
	if o.kind == opAddElems || o.kind == opDelElems {
		return fmt.Sprintf("%d elements of %s %s", len(o.elems), f.word, o.name)
	}
	var b strings.Builder
	writeOp(&b, nil, f, o)
	return b.String()
}

func applyOp(tables map[nftables.TableFamily]*fakeTable, f *family, o op) error {
	if o.kind == opAddTable {
		if tables[f.table] == nil {
			tables[f.table] = &fakeTable{chains: map[string]*fakeChain{}, sets: map[string]*fakeSet{}}
		}
		return nil
	}
	t := tables[f.table]
	if t == nil {
		return fmt.Errorf("table %s %s: %w", f.word, TableName, unix.ENOENT)
	}
	switch o.kind {
	case opAddChain:
		if t.chains[o.name] == nil {
			t.chains[o.name] = &fakeChain{def: o.chain}
		}
		return nil
	case opFlushChain:
		ch := t.chains[o.name]
		if ch == nil {
			return fmt.Errorf("chain %s: %w", o.name, unix.ENOENT)
		}
		ch.rules = nil
		return nil
	case opDelChain:
		return t.delChain(o.name)
	case opAddSet:
		if t.sets[o.name] == nil {
			t.sets[o.name] = &fakeSet{def: *o.set, elems: map[string]fakeElem{}}
		}
		return nil
	case opDelSet:
		return t.delSet(o.name)
	case opAddRule:
		return t.addRule(o.name, o.rule)
	case opAddElems, opDelElems:
		return t.changeElems(o.name, o.kind == opDelElems, o.elems)
	}
	return fmt.Errorf("operation kind %d: %w", o.kind, unix.EINVAL)
}

// delChain deletes a chain and its rules, as the kernel does, unless something refers to it.
func (t *fakeTable) delChain(name string) error {
	if t.chains[name] == nil {
		return fmt.Errorf("chain %s: %w", name, unix.ENOENT)
	}
	if user := t.chainUser(name); user != "" {
		return fmt.Errorf("chain %s is used by %s: %w", name, user, unix.EBUSY)
	}
	delete(t.chains, name)
	return nil
}

// chainUser names a rule or element that refers to chain name, or returns "".
func (t *fakeTable) chainUser(name string) string {
	for cn, ch := range t.chains {
		for _, r := range ch.rules {
			if cn != name && slices.Contains(r.chains, name) {
				return "a rule of chain " + cn
			}
		}
	}
	for sn, s := range t.sets {
		for _, e := range s.elems {
			if e.chain == name {
				return "an element of set " + sn
			}
		}
	}
	return ""
}

func (t *fakeTable) delSet(name string) error {
	if t.sets[name] == nil {
		return fmt.Errorf("set %s: %w", name, unix.ENOENT)
	}
	for cn, ch := range t.chains {
		for _, r := range ch.rules {
			if slices.Contains(r.sets, name) {
				return fmt.Errorf("set %s is used by a rule of chain %s: %w", name, cn, unix.EBUSY)
			}
		}
	}
	delete(t.sets, name)
	return nil
}

func (t *fakeTable) addRule(chain string, r rule) error {
	ch := t.chains[chain]
	if ch == nil {
		return fmt.Errorf("chain %s: %w", chain, unix.ENOENT)
	}
	fr := fakeRule{text: r.text, comment: r.comment()}
	for _, e := range r.exprs {
		switch e := e.(type) {
		case *expr.Verdict:
			if e.Chain != "" {
				fr.chains = append(fr.chains, e.Chain)
			}
		case *expr.Lookup:
			if r.anon == nil || e != r.anon.lookup {
				fr.sets = append(fr.sets, e.SetName)
			}
		case *expr.Dynset:
			fr.sets = append(fr.sets, e.SetName)
		}
	}
	if r.anon != nil {
		for _, e := range r.anon.elems {
			if e.VerdictData != nil && e.VerdictData.Chain != "" {
				fr.chains = append(fr.chains, e.VerdictData.Chain)
			}
		}
	}
	for _, c := range fr.chains {
		if t.chains[c] == nil {
			return fmt.Errorf("rule refers to chain %s: %w", c, unix.ENOENT)
		}
	}
	for _, s := range fr.sets {
		if t.sets[s] == nil {
			return fmt.Errorf("rule refers to set %s: %w", s, unix.ENOENT)
		}
	}
	ch.rules = append(ch.rules, fr)
	return nil
}

func (t *fakeTable) changeElems(set string, del bool, elems []nftables.SetElement) error {
	s := t.sets[set]
	if s == nil {
		return fmt.Errorf("set %s: %w", set, unix.ENOENT)
	}
	for _, e := range elems {
		id := elemID(e)
		cur, exists := s.elems[id]
		if del {
			if !exists {
				return fmt.Errorf("set %s: element %s: %w", set, formatElem(&s.def, e, ""), unix.ENOENT)
			}
			delete(s.elems, id)
			continue
		}
		fe, err := t.checkElem(s, e)
		if err != nil {
			return fmt.Errorf("set %s: element %s: %w", set, formatElem(&s.def, e, ""), err)
		}
		if exists && (string(cur.e.Val) != string(fe.e.Val) || cur.chain != fe.chain) {
			return fmt.Errorf("set %s: element %s holds other data: %w", set, formatElem(&s.def, e, ""), unix.EEXIST)
		}
		s.elems[id] = fe
	}
	return nil
}

// checkElem refuses what the kernel refuses: a key or value of another size than the set's types,
// a map element without data, a verdict to a missing chain.
func (t *fakeTable) checkElem(s *fakeSet, e nftables.SetElement) (fakeElem, error) {
	fe := fakeElem{e: e}
	if len(e.Key) != valueLen(s.def.KeyType) {
		return fe, fmt.Errorf("key of %d bytes, want %d: %w", len(e.Key), valueLen(s.def.KeyType), unix.EINVAL)
	}
	if !s.def.IsMap || e.IntervalEnd {
		return fe, nil
	}
	if s.def.DataType.Name == nftables.TypeVerdict.Name {
		if e.VerdictData == nil {
			return fe, fmt.Errorf("map element without a verdict: %w", unix.EINVAL)
		}
		fe.chain = e.VerdictData.Chain
		if fe.chain != "" && t.chains[fe.chain] == nil {
			return fe, fmt.Errorf("verdict to chain %s: %w", fe.chain, unix.ENOENT)
		}
		fe.e.VerdictData = nil
		return fe, nil
	}
	if len(e.Val) != valueLen(s.def.DataType) {
		return fe, fmt.Errorf("data of %d bytes, want %d: %w", len(e.Val), valueLen(s.def.DataType), unix.EINVAL)
	}
	return fe, nil
}

// valueLen is the size of a value of type t: concatenations pad each field to four bytes.
func valueLen(t nftables.SetDatatype) int {
	parts := nftables.ConcatSetTypeElements(t)
	if len(parts) <= 1 {
		return int(t.Bytes)
	}
	n := 0
	for _, p := range parts {
		n += int(p.Bytes+3) / 4 * 4
	}
	return n
}
