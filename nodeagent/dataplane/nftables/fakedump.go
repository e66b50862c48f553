package nftables

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/google/nftables"
)

// This file is the fake kernel's reading side: what Reconcile and a restart read back, the
// conntrack deletions, and the dump in `nft list table` syntax.

func (k *Fake) table(f *family) *fakeTable { return k.tables[f.table] }

// read calls fn with the family's table under the lock; errNoTable when it does not exist.
func (k *Fake) read(f *family, fn func(t *fakeTable)) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	t := k.table(f)
	if t == nil {
		return errNoTable
	}
	fn(t)
	return nil
}

func (k *Fake) chains(f *family) (names []string, err error) {
	k.mu.Lock()
	k.dumps++
	hook := k.beforeDump
	k.mu.Unlock()
	if hook != nil {
		hook()
	}
	err = k.read(f, func(t *fakeTable) { names = slices.Sorted(maps.Keys(t.chains)) })
	return names, err
}

func (k *Fake) rules(f *family, fn func(chain, comment string)) error {
	return k.read(f, func(t *fakeTable) {
		for _, name := range slices.Sorted(maps.Keys(t.chains)) {
			for _, r := range t.chains[name].rules {
				fn(name, r.comment)
			}
		}
	})
}

func (k *Fake) sets(f *family) (names []string, err error) {
	err = k.read(f, func(t *fakeTable) { names = slices.Sorted(maps.Keys(t.sets)) })
	return names, err
}

func (k *Fake) elements(f *family, set string, fn func(e nftables.SetElement, chain string)) error {
	err := k.read(f, func(t *fakeTable) {
		if s := t.sets[set]; s != nil {
			for _, e := range sortedElems(s) {
				fn(e.e, e.chain)
			}
		}
	})
	if err == errNoTable {
		return nil
	}
	return err
}

// sortedElems orders a set's elements by key, an interval's start before the end at the same key.
func sortedElems(s *fakeSet) []fakeElem {
	return slices.SortedFunc(maps.Values(s.elems), func(a, b fakeElem) int {
		if c := cmp.Compare(string(a.e.Key), string(b.e.Key)); c != 0 {
			return c
		}
		if a.e.IntervalEnd == b.e.IntervalEnd {
			return 0
		}
		if a.e.IntervalEnd {
			return -1
		}
		return 1
	})
}

func (k *Fake) forget(jobs []conntrackJob) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, j := range jobs {
		s := fmt.Sprintf("conntrack -D -p udp --dport %d", j.port)
		if j.to.IsValid() {
			s += " --orig-dst " + j.to.String()
		}
		if j.backend.IsValid() {
			s += " --reply-src " + j.backend.String()
		}
		k.forgotten = append(k.forgotten, s)
	}
	return nil
}

func (k *Fake) close() error { return nil }

// Forgotten returns and clears the UDP conntrack deletions asked for since the last call, sorted.
func (k *Fake) Forgotten() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := k.forgotten
	k.forgotten = nil
	slices.Sort(out)
	return out
}

// Dump writes the tables in `nft list table` syntax: ip first, then ip6; sets and chains by
// name, rules in order, elements by key.
func (k *Fake) Dump() string { return k.dump(dumpOptions{}) }

// dumpOptions shorten a dump for test goldens.
type dumpOptions struct {
	// hideEmpty leaves out sets without elements.
	hideEmpty bool
	// hideChain, when set, leaves out the chains it returns true for; the dump counts them.
	hideChain func(f *family, name string, rules []string) bool
}

func (k *Fake) dump(o dumpOptions) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	var b strings.Builder
	for _, f := range families {
		t := k.table(f)
		if t == nil {
			continue
		}
		fmt.Fprintf(&b, "table %s %s {\n", f.word, TableName)
		for _, name := range slices.Sorted(maps.Keys(t.sets)) {
			if s := t.sets[name]; !o.hideEmpty || len(s.elems) > 0 {
				writeFakeSet(&b, name, s)
			}
		}
		hidden := 0
		for _, name := range slices.Sorted(maps.Keys(t.chains)) {
			ch := t.chains[name]
			if o.hideChain != nil && o.hideChain(f, name, ch.texts()) {
				hidden++
				continue
			}
			writeFakeChain(&b, name, ch)
		}
		if hidden > 0 {
			fmt.Fprintf(&b, "\t# %d chains not shown\n", hidden)
		}
		b.WriteString("}\n")
	}
	return b.String()
}

func (ch *fakeChain) texts() []string {
	out := make([]string, len(ch.rules))
	for i, r := range ch.rules {
		out[i] = r.text
	}
	return out
}

func writeFakeChain(b *strings.Builder, name string, ch *fakeChain) {
	fmt.Fprintf(b, "\tchain %s {\n", name)
	if spec := chainSpec(ch.def); spec != "" {
		fmt.Fprintf(b, "\t\t%s\n", strings.Trim(spec, " {}"))
	}
	for _, r := range ch.rules {
		fmt.Fprintf(b, "\t\t%s\n", r.text)
	}
	b.WriteString("\t}\n")
}

func writeFakeSet(b *strings.Builder, name string, s *fakeSet) {
	fmt.Fprintf(b, "\t%s %s {\n", setWord(&s.def), name)
	for _, l := range setSpec(&s.def) {
		fmt.Fprintf(b, "\t\t%s\n", l)
	}
	var lines []string
	if s.def.Interval {
		lines = intervalLines(s)
	} else {
		for _, e := range sortedElems(s) {
			lines = append(lines, formatElem(&s.def, e.e, e.chain))
		}
	}
	if len(lines) > 0 {
		b.WriteString("\t\telements = {\n")
		for _, l := range lines {
			fmt.Fprintf(b, "\t\t\t%s,\n", l)
		}
		b.WriteString("\t\t}\n")
	}
	b.WriteString("\t}\n")
}

// intervalLines writes an interval set's elements as nft does, "first-last : data". Keys of
// interval sets are 32-bit integers here; an element of another shape is written alone.
func intervalLines(s *fakeSet) []string {
	elems := sortedElems(s)
	var out []string
	for i, e := range elems {
		if e.e.IntervalEnd {
			continue
		}
		end := slices.IndexFunc(elems[i+1:], func(x fakeElem) bool { return x.e.IntervalEnd })
		if len(e.e.Key) != 4 || end < 0 || len(elems[i+1+end].e.Key) != 4 {
			out = append(out, formatElem(&s.def, e.e, e.chain))
			continue
		}
		first, last := binary.BigEndian.Uint32(e.e.Key), binary.BigEndian.Uint32(elems[i+1+end].e.Key)-1
		out = append(out, fmt.Sprintf("%d-%d : %s", first, last, formatValue(s.def.DataType, e.e.Val)))
	}
	return out
}
