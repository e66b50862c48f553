package nftables

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// TestNFTScriptBuildsOurTable keeps BENCH fullsync_vs_nft honest: the script nft -f loads there
// must be the table our full sync builds, or the ratio compares different work.
func TestNFTScriptBuildsOurTable(t *testing.T) {
	netlab.Require(t)
	testenv.RequireCommand(t, "nft")
	ports := benchPorts(2500) // NodePorts, ClusterIP-only ports and several classes
	script, err := nftScript(benchNode(), ports)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ruleset.nft")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	nftFullSync(t, path, func(ns *netlab.NS) { fullSyncMatches(t, ns, benchNode(), ports) })
}

// nftScript writes, in nft syntax, exactly the tables New and Apply build for node and ports:
// both families' skeletons, the forwarding classes in use and every element, with the same rule
// and element comments (so fullSyncMatches can prove the two tables equal). It is the script an
// expert would hand to `nft -f` for the same ruleset: every set declared once with all of its
// elements inside its definition (as `nft list ruleset` prints them), the whole file one
// transaction. Of the forms nft takes, that is the fastest (10,000 services, three runs each on
// this machine: 1.43-1.53 s; one `add element ... { a, b, c }` per set after the tables
// 1.63-2.34 s; one `add element` per element, the old baseline, 2.11-2.36 s).
func nftScript(node dataplane.Node, ports []dataplane.Port) (string, error) {
	var s strings.Builder
	for _, f := range []*family{familyV4, familyV6} {
		if err := writeTable(&s, f, node, ports); err != nil {
			return "", err
		}
	}
	return s.String(), nil
}

// writeTable writes one family's table as New (the skeleton) and Apply (the ports) build it.
func writeTable(s *strings.Builder, f *family, node dataplane.Node, ports []dataplane.Port) error {
	cfg := &renderConfig{masqBit: DefaultMasqueradeBit, rejectBit: DefaultRejectBit,
		setID: func(string) (uint32, error) { return 0, fmt.Errorf("chain-path port in the benchmark") }}
	for _, p := range node.PodCIDRs {
		if f.has(p.Addr()) {
			cfg.podCIDRs = append(cfg.podCIDRs, p)
		}
	}
	skel, err := newSkeleton(f, cfg, node.NodePortAddrs(f.v6))
	if err != nil {
		return err
	}
	classes, elems, err := scriptElems(f, cfg, ports)
	if err != nil {
		return err
	}
	for _, a := range skel.nodePortAddrs {
		elems[setNodePortAddrs] = append(elems[setNodePortAddrs], a.String())
	}

	fmt.Fprintf(s, "table %s %s {\n", f.word, TableName)
	for _, set := range skel.sets {
		writeSet(s, kindWord(set), set.Name, nftTypeOf(f, set.Name), elems[set.Name])
	}
	sortedClasses := slices.SortedFunc(maps.Keys(classes), func(a, b classKey) int {
		return strings.Compare(pickChain(a), pickChain(b))
	})
	for _, c := range sortedClasses {
		name := dataSet(c.space, c.route, classOf(c.k))
		writeSet(s, "set", name, nftTypeOf(f, dataSet(c.space, c.route, "x")), elems[name])
	}
	for _, c := range sortedClasses {
		// nft wants a protocol match before a port mapping; the kernel does not.
		writeChain(s, pickChain(c), "", []rule{pickRule(f, c)}, "meta l4proto { tcp, udp, sctp } ")
	}
	for _, c := range skel.chains {
		rules := c.rules
		if c.name == chainServices {
			rules = servicesRules(f, cfg, classes)
		}
		writeChain(s, c.name, hookOf(c.name), rules, "")
	}
	s.WriteString("}\n")
	return nil
}

// scriptElems renders the family's ports and returns the classes they use and every set's
// elements in nft syntax.
func scriptElems(f *family, cfg *renderConfig, ports []dataplane.Port) (map[classKey]bool, map[string][]string, error) {
	classes := map[classKey]bool{}
	elems := map[string][]string{} // set name → elements in nft syntax
	clusterIPs, pairs := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, p := range ports {
		if familyOf(p.Service.Family) != f {
			continue
		}
		o, err := render(cfg, p)
		if err != nil {
			return nil, nil, err
		}
		if len(o.chains) > 0 || len(o.sets) > 0 {
			return nil, nil, fmt.Errorf("port %s has chains of its own: the script writes only the data path", p.Base)
		}
		for _, c := range o.classes {
			classes[c] = true
		}
		for _, e := range o.data {
			elems[e.set()] = append(elems[e.set()], nftElemOf(f, e))
		}
		for _, a := range o.clusterIPs {
			clusterIPs[a] = true
		}
		for _, a := range o.hairpin {
			pairs[a] = true
		}
	}
	for a := range clusterIPs {
		elems[setClusterIPs] = append(elems[setClusterIPs], a.String())
	}
	for a := range pairs {
		elems[setHairpin] = append(elems[setHairpin], a.String()+" . "+a.String())
	}
	return classes, elems, nil
}

func writeSet(s *strings.Builder, kind, name, typ string, elems []string) {
	fmt.Fprintf(s, "%s %s {\n%s\n", kind, name, typ)
	if len(elems) > 0 {
		slices.Sort(elems) // a script that reads the same every run
		fmt.Fprintf(s, "elements = { %s }\n", strings.Join(elems, ",\n"))
	}
	s.WriteString("}\n")
}

// writeChain writes a chain with its rules, each commented with its hash as Apply comments it.
func writeChain(s *strings.Builder, name, hook string, rules []rule, prefix string) {
	fmt.Fprintf(s, "chain %s {\n", name)
	if hook != "" {
		fmt.Fprintf(s, "type %s;\n", hook)
	}
	for _, r := range rules {
		fmt.Fprintf(s, "%s%s comment %q\n", prefix, r.text, r.comment())
	}
	s.WriteString("}\n")
}

// hookOf is the nft declaration of a base chain of the skeleton, "" for a regular chain.
func hookOf(chain string) string {
	return map[string]string{
		chainNatPrerouting: "nat hook prerouting priority -100", chainNatOutput: "nat hook output priority -100",
		chainNatPostrouting: "nat hook postrouting priority 100", chainFilterInput: "filter hook input priority 0",
		chainFilterForward: "filter hook forward priority 0", chainFilterOutput: "filter hook output priority -90",
	}[chain]
}

func kindWord(s *nftables.Set) string {
	if s.IsMap {
		return "map"
	}
	return "set"
}

// nftTypeOf is the nft declaration of a skeleton or class set's type.
func nftTypeOf(f *family, name string) string {
	addr := "ipv4_addr"
	if f.v6 {
		addr = "ipv6_addr"
	}
	fe, np := addr+" . inet_proto . inet_service", "inet_proto . inet_service"
	switch {
	case name == setVIPs:
		return "type " + fe + " : verdict"
	case name == setNodePorts:
		return "type " + np + " : verdict"
	case name == setNodePortAddrs, name == setClusterIPs:
		return "type " + addr
	case name == setHairpin:
		return "type " + addr + " . " + addr
	case strings.HasPrefix(name, setEndpoints):
		return fmt.Sprintf("typeof numgen random mod %d : %s daddr . tcp dport; flags interval", slotCount, f.word)
	case strings.HasPrefix(name, spaceFE) && strings.HasSuffix(name, "-ep"):
		return fmt.Sprintf("typeof %s daddr . meta l4proto . th dport . numgen random mod 1 : %s daddr . th dport", f.word, f.word)
	case strings.HasSuffix(name, "-ep"):
		return fmt.Sprintf("typeof meta l4proto . th dport . numgen random mod 1 : %s daddr . th dport", f.word)
	case strings.HasPrefix(name, spaceFE):
		return "type " + fe
	}
	return "type " + np
}

// nftElem writes an IPv4 data element as nft reads it (render_test.go reads its text too).
func nftElem(e dataElem) string { return nftElemOf(familyV4, e) }

// nftElemOf writes a data element as nft reads it, with its owner comment as Apply sends it.
func nftElemOf(f *family, e dataElem) string {
	k, val := e.id.key.bytes(), e.val.bytes()
	var parts []string
	if strings.HasPrefix(e.set(), spaceFE) {
		a, _ := netip.AddrFromSlice(k[:f.addrLen])
		parts, k = append(parts, f.addrText(a)), k[f.addrLen:]
	}
	parts = append(parts, dataplane.IPProtoName(k[0]), fmt.Sprint(binary.BigEndian.Uint16(k[4:6])))
	if len(k) > 8 {
		parts = append(parts, fmt.Sprint(binary.NativeEndian.Uint32(k[8:12])))
	}
	out := strings.Join(parts, " . ") + fmt.Sprintf(" comment %q", e.owner)
	if val != nil {
		a, _ := netip.AddrFromSlice(val[:f.addrLen])
		out += fmt.Sprintf(" : %s . %d", f.addrText(a), binary.BigEndian.Uint16(val[f.addrLen:f.addrLen+2]))
	}
	return out
}
