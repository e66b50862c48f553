package ipvs

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"sigs.k8s.io/knftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// The nftables half. IPVS decides where a connection goes; this table decides whether it may go
// and whether its source is rewritten. Its shape is fixed: per-frontend state lives in map and
// set elements, so a change to a service is a few element updates in one transaction, and an
// endpoint change touches nftables only when a local endpoint address appears or goes (hairpin).
//
//	input (filter) / output (before IPVS's LOCAL_OUT hook) -> services:
//	  new connection to a frontend: addr . proto . port vmap @fe4/@fe6 -> one verdict chain
//	  new connection to a service address on an unknown port: reject
//	verdict chains:
//	  fwd-plain      accept
//	  fwd-masq       mark for masquerade (ETP Cluster external traffic, host-originated)
//	  fwd-clusterip  accept from this node's pods, masquerade everything else
//	  fwd-local      ETP Local: keep the client address unless it is this host's
//	  drop-external  ETP Local with no local endpoint: drop unless from this host or its pods
//	  drop-all, reject-all  no endpoint this traffic may use / none at all
//	  sr-<hash>      LB source ranges, then the frontend's verdict chain
//	postrouting (srcnat): masquerade hairpin (source == destination) and marked packets.

// tableName is our table in the inet family; nothing else in the kernel is touched.
const tableName = "ganglion-ipvs"

// Priorities relative to IPVS: it takes LOCAL_IN packets at 98-99, after "filter" (0), and
// LOCAL_OUT packets at -98/-99, so our output chain runs at "mangle" (-150), after conntrack.
var (
	filterType  = knftables.FilterType
	natType     = knftables.NATType
	inputHook   = knftables.InputHook
	outputHook  = knftables.OutputHook
	postHook    = knftables.PostroutingHook
	filterPrio  = knftables.FilterPriority
	manglePrio  = knftables.ManglePriority
	srcnatPrio  = knftables.SNATPriority
	tableRemark = "ganglion IPVS dataplane; managed, do not edit"
)

func famSuffix(a netip.Addr) string {
	if a.Is6() {
		return "6"
	}
	return "4"
}

func ipKw(six bool) string {
	if six {
		return "ip6"
	}
	return "ip"
}

// baseObjects adds the table's fixed objects to tx, replacing the rules of the fixed chains so
// that running it again (at start, on Reconcile) repairs them atomically.
func baseObjects(tx *knftables.Transaction, mark uint32) {
	tx.Add(&knftables.Table{Comment: &tableRemark})
	for _, f := range []string{"4", "6"} {
		addr := "ipv" + f + "_addr"
		tx.Add(&knftables.Set{Name: "svc-addrs" + f, Type: addr})
		tx.Add(&knftables.Set{Name: "pod-cidrs" + f, Type: addr, Flags: []knftables.SetFlag{knftables.IntervalFlag}})
		tx.Add(&knftables.Set{Name: "hairpin" + f, Type: addr + " . " + addr})
		tx.Add(&knftables.Map{Name: "fe" + f, Type: addr + " . inet_proto . inet_service : verdict"})
	}
	m := fmt.Sprintf("0x%x", mark)
	chains := []struct {
		name  string
		base  *knftables.Chain
		rules []string
	}{
		{"services", nil, []string{
			"ct state new ip daddr . meta l4proto . th dport vmap @fe4",
			"ct state new ip6 daddr . meta l4proto . th dport vmap @fe6",
			"ct state new meta l4proto { tcp, udp, sctp } ip daddr @svc-addrs4 goto " + chainReject,
			"ct state new meta l4proto { tcp, udp, sctp } ip6 daddr @svc-addrs6 goto " + chainReject,
		}},
		{"input", &knftables.Chain{Type: &filterType, Hook: &inputHook, Priority: &filterPrio}, []string{"jump services"}},
		{"output", &knftables.Chain{Type: &filterType, Hook: &outputHook, Priority: &manglePrio}, []string{"jump services"}},
		{chainForward, nil, []string{"accept"}},
		{chainForwardMasq, nil, []string{"meta mark set meta mark or " + m + " accept"}},
		{chainForwardCluster, nil, []string{
			"ip saddr @pod-cidrs4 accept", "ip6 saddr @pod-cidrs6 accept", "goto " + chainForwardMasq,
		}},
		{chainForwardLocal, nil, []string{"fib saddr type local goto " + chainForwardMasq, "accept"}},
		{chainDropExternal, nil, []string{
			"fib saddr type local goto " + chainForwardMasq,
			"ip saddr @pod-cidrs4 accept", "ip6 saddr @pod-cidrs6 accept", "drop",
		}},
		{chainDrop, nil, []string{"drop"}},
		{chainReject, nil, []string{"meta l4proto tcp reject with tcp reset", "reject"}},
		{"postrouting", &knftables.Chain{Type: &natType, Hook: &postHook, Priority: &srcnatPrio}, []string{
			"ip saddr . ip daddr @hairpin4 masquerade",
			"ip6 saddr . ip6 daddr @hairpin6 masquerade",
			"meta mark and " + m + " == 0 return",
			"meta mark set meta mark xor " + m,
			"masquerade fully-random",
		}},
	}
	for _, c := range chains {
		ch := c.base
		if ch == nil {
			ch = &knftables.Chain{}
		}
		ch.Name = c.name
		tx.Add(ch)
		tx.Flush(&knftables.Chain{Name: c.name})
	}
	for _, c := range chains {
		for _, r := range c.rules {
			tx.Add(&knftables.Rule{Chain: c.name, Rule: r})
		}
	}
}

func feElement(k vsKey, v verdict) *knftables.Element {
	return &knftables.Element{
		Map:   "fe" + famSuffix(k.Addr),
		Key:   []string{k.Addr.String(), dataplane.IPProtoName(uint8(k.Proto)), strconv.Itoa(int(k.Port))},
		Value: []string{"goto " + v.mapChain(k)},
	}
}

// addFrontend writes (or rewrites) k's verdict, with its source-range chain when it has one.
func addFrontend(tx *knftables.Transaction, k vsKey, v verdict) {
	if v.Ranges != "" {
		name := v.mapChain(k)
		tx.Add(&knftables.Chain{Name: name})
		tx.Flush(&knftables.Chain{Name: name})
		if v.Ranges != "none" {
			tx.Add(&knftables.Rule{Chain: name, Rule: fmt.Sprintf("%s saddr { %s } goto %s", ipKw(k.Addr.Is6()), v.Ranges, v.Chain)})
		}
		tx.Add(&knftables.Rule{Chain: name, Rule: "drop"})
	}
	tx.Add(feElement(k, v))
}

func addrElement(set string, a netip.Addr) *knftables.Element {
	return &knftables.Element{Set: set + famSuffix(a), Key: []string{a.String()}}
}

func hairpinElement(a netip.Addr) *knftables.Element {
	return &knftables.Element{Set: "hairpin" + famSuffix(a), Key: []string{a.String(), a.String()}}
}

func podCIDRElement(p netip.Prefix) *knftables.Element {
	return &knftables.Element{Set: "pod-cidrs" + famSuffix(p.Addr()), Key: []string{p.Masked().String()}}
}

// listFrontends reads the frontend maps back: what an earlier run of the agent owns.
func listFrontends(ctx context.Context, nft knftables.Interface) (map[vsKey]string, error) {
	out := map[vsKey]string{}
	for _, m := range []string{"fe4", "fe6"} {
		elems, err := nft.ListElements(ctx, "map", m)
		if err != nil {
			if knftables.IsNotFound(err) {
				continue
			}
			return nil, fmt.Errorf("listing %s: %w", m, err)
		}
		for _, e := range elems {
			k, ok := parseFrontendKey(e.Key)
			if !ok {
				continue
			}
			out[k] = strings.Join(e.Value, " ")
		}
	}
	return out, nil
}

func parseFrontendKey(key []string) (vsKey, bool) {
	if len(key) != 3 {
		return vsKey{}, false
	}
	a, err := netip.ParseAddr(key[0])
	if err != nil {
		return vsKey{}, false
	}
	var proto uint16
	switch key[1] {
	case "tcp", "6":
		proto = 6
	case "udp", "17":
		proto = 17
	case "sctp", "132":
		proto = 132
	default:
		return vsKey{}, false
	}
	port, err := strconv.ParseUint(key[2], 10, 16)
	if err != nil {
		return vsKey{}, false
	}
	return vsKey{Proto: proto, Addr: a.Unmap(), Port: uint16(port)}, true
}
