package ipvs

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftgen"
)

// fakeNFT is nftKernel in memory, for tests without root: it applies the same operations with the
// kernel's refusals that matter here (no table, a missing chain or element) and all-or-nothing
// commits, and Dump writes the table the way `nft list table` would.
type fakeNFT struct {
	mu      sync.Mutex
	st      fakeTable
	commits int
	// gen is the ruleset generation: every committed transaction moves it, ours, Delete's and
	// Touch's.
	gen uint32
}

var _ nftKernel = (*fakeNFT)(nil)

// fakeTable is the table's content: chains as rule texts, sets as element texts, the frontend
// maps as the chain each element jumps to.
type fakeTable struct {
	exists bool
	chains map[string][]string
	sets   map[string]map[string]bool
	fe     map[vsKey]string
}

func newFakeNFT() *fakeNFT { return &fakeNFT{} }

func (t fakeTable) clone() fakeTable {
	c := fakeTable{exists: t.exists, chains: maps.Clone(t.chains), sets: map[string]map[string]bool{}, fe: maps.Clone(t.fe)}
	for name, s := range t.sets {
		c.sets[name] = maps.Clone(s)
	}
	return c
}

// Commit applies ops to a copy and keeps it only when every one succeeded.
func (f *fakeNFT) Commit(ops []nftOp) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	next := f.st.clone()
	for _, o := range ops {
		if err := next.apply(o); err != nil {
			return fmt.Errorf("nftables transaction: %s: %w", o, err)
		}
	}
	f.st = next
	f.commits++
	f.gen = nftgen.Next(f.gen)
	return nil
}

// Generation returns the ruleset generation.
func (f *fakeNFT) Generation() (uint32, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.gen, nil
}

// Touch stands for someone else's transaction on another table: the generation moves, our
// table does not change.
func (f *fakeNFT) Touch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen = nftgen.Next(f.gen)
}

func (t *fakeTable) apply(o nftOp) error {
	if o.Kind == nftBase {
		t.base(o.Mark)
		return nil
	}
	if !t.exists {
		return unix.ENOENT
	}
	switch o.Kind {
	case nftPodCIDRs:
		t.sets[setPodCIDRs+"4"], t.sets[setPodCIDRs+"6"] = map[string]bool{}, map[string]bool{}
		for _, p := range o.PodCIDRs {
			t.sets[setPodCIDRs+famSuffix(p.Addr())][p.Masked().String()] = true
		}
	case nftFlush:
		for _, s := range []string{setSvcAddrs, setHairpin} {
			t.sets[s+"4"], t.sets[s+"6"] = map[string]bool{}, map[string]bool{}
		}
		t.fe = map[vsKey]string{}
	case nftAddFrontend:
		return t.addFrontend(o.Key, o.State)
	case nftDelFrontend:
		return t.delFrontend(o.Key, o.State)
	case nftAddAddr, nftDelAddr:
		t.element(setSvcAddrs+famSuffix(o.Addr), o.Addr.String(), o.Kind == nftAddAddr)
	case nftAddHairpin, nftDelHairpin:
		t.element(setHairpin+famSuffix(o.Addr), o.Addr.String()+" . "+o.Addr.String(), o.Kind == nftAddHairpin)
	default:
		return fmt.Errorf("operation kind %d unknown", o.Kind)
	}
	return nil
}

func (t *fakeTable) base(mark uint32) {
	if !t.exists {
		*t = fakeTable{exists: true, chains: map[string][]string{}, sets: map[string]map[string]bool{}, fe: map[vsKey]string{}}
	}
	for _, s := range []string{setSvcAddrs, setPodCIDRs, setHairpin} {
		for _, f := range []string{"4", "6"} {
			if t.sets[s+f] == nil {
				t.sets[s+f] = map[string]bool{}
			}
		}
	}
	for _, c := range fixedChains(mark) {
		t.chains[c.Name] = ruleTexts(c.Rules)
	}
}

func ruleTexts(rules []nftRule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.Text
	}
	return out
}

func (t *fakeTable) element(set, e string, add bool) {
	if add {
		t.sets[set][e] = true
	} else {
		delete(t.sets[set], e)
	}
}

func (t *fakeTable) addFrontend(k vsKey, st feState) error {
	if st.Verdict.Restricted {
		name := srChain(k)
		if _, ok := t.chains[name]; !ok || !st.Unknown {
			t.chains[name] = nil
		}
		if !st.Unknown {
			t.chains[name] = ruleTexts(srRules(st.Verdict))
		}
	}
	target := st.target(k)
	if _, ok := t.chains[target]; !ok {
		return fmt.Errorf("chain %s: %w", target, unix.ENOENT)
	}
	if cur, ok := t.fe[k]; ok && cur != target {
		return fmt.Errorf("element %s: %w", k, unix.EEXIST)
	}
	t.fe[k] = target
	return nil
}

func (t *fakeTable) delFrontend(k vsKey, st feState) error {
	if _, ok := t.fe[k]; !ok {
		return fmt.Errorf("element %s: %w", k, unix.ENOENT)
	}
	delete(t.fe, k)
	if st.Verdict.Restricted {
		if _, ok := t.chains[srChain(k)]; !ok {
			return fmt.Errorf("chain %s: %w", srChain(k), unix.ENOENT)
		}
		delete(t.chains, srChain(k))
	}
	return nil
}

// Frontends lists the frontend map elements.
func (f *fakeNFT) Frontends() (map[vsKey]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.st.fe), nil
}

// Hairpins lists the hairpin sets' addresses.
func (f *fakeNFT) Hairpins() ([]netip.Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for _, s := range []string{setHairpin + "4", setHairpin + "6"} {
		for e := range f.st.sets[s] {
			a, _, _ := strings.Cut(e, " . ")
			out = append(out, netip.MustParseAddr(a))
		}
	}
	return out, nil
}

// Delete drops the table, as `nft delete table` would.
func (f *fakeNFT) Delete() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = fakeTable{}
	f.gen = nftgen.Next(f.gen)
}

// Dump writes the table in `nft list table` form, sorted, so tests can compare it.
func (f *fakeNFT) Dump() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.st.exists {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "table inet %s {\n", tableName)
	for _, name := range slices.Sorted(maps.Keys(f.st.sets)) {
		writeElements(&b, "set "+name, slices.Sorted(maps.Keys(f.st.sets[name])))
	}
	for _, six := range []bool{false, true} {
		var elems []string
		for k, c := range f.st.fe {
			if k.Addr.Is6() == six {
				elems = append(elems, fmt.Sprintf("%s . %s . %d : goto %s", k.Addr, dataplane.IPProtoName(uint8(k.Proto)), k.Port, c))
			}
		}
		slices.Sort(elems)
		writeElements(&b, "map fe"+suffix(six), elems)
	}
	for _, name := range slices.Sorted(maps.Keys(f.st.chains)) {
		fmt.Fprintf(&b, "\tchain %s {\n", name)
		for _, r := range f.st.chains[name] {
			fmt.Fprintf(&b, "\t\t%s\n", r)
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func writeElements(b *strings.Builder, header string, elems []string) {
	fmt.Fprintf(b, "\t%s {\n", header)
	if len(elems) > 0 {
		fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(elems, ", "))
	}
	b.WriteString("\t}\n")
}
