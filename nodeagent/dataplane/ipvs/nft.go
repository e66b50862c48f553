package ipvs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
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
//
// The table is programmed over netlink (google/nftables, as the nftables backend): the agent
// runs no external binary. nftKernel is the seam; fakeNFT stands in for the kernel in tests.

// tableName is our table in the inet family; nothing else in the kernel is touched.
const tableName = "ganglion-ipvs"

// The table's sets and maps, per family suffix "4" or "6".
const (
	setSvcAddrs = "svc-addrs"
	setPodCIDRs = "pod-cidrs"
	setHairpin  = "hairpin"
	mapFrontend = "fe"
)

func famSuffix(a netip.Addr) string {
	if a.Is6() {
		return "6"
	}
	return "4"
}

// hookKind names the base chains' hooks; the netlink side maps them to hook numbers and
// priorities relative to IPVS: it takes LOCAL_IN packets at 98-99, after "filter" (0), and
// LOCAL_OUT packets at -98/-99, so our output chain runs at "mangle" (-150), after conntrack.
type hookKind uint8

const (
	hookNone hookKind = iota
	hookInput
	hookOutput
	hookPostrouting
)

// chainDef is one of the table's fixed chains with its rules.
type chainDef struct {
	Name  string
	Hook  hookKind
	Rules []nftRule
}

// fixedChains are the chains every start and Reconcile rewrites whole.
func fixedChains(mark uint32) []chainDef {
	var services []nftRule
	for _, six := range []bool{false, true} {
		services = append(services, rb().ctNew().frontendVmap(famOf(six), mapFrontend+suffix(six)).rule())
	}
	for _, six := range []bool{false, true} {
		for _, p := range []uint8{unix.IPPROTO_TCP, unix.IPPROTO_UDP, unix.IPPROTO_SCTP} {
			services = append(services, rb().ctNew().l4proto(p).addrIn(famOf(six), "daddr", setSvcAddrs+suffix(six)).gotoChain(chainReject).rule())
		}
	}
	podAccept := func() []nftRule {
		return []nftRule{
			rb().addrIn(fam4, "saddr", setPodCIDRs+"4").accept().rule(),
			rb().addrIn(fam6, "saddr", setPodCIDRs+"6").accept().rule(),
		}
	}
	masq := rb().gotoChain(chainForwardMasq).rule()
	fromHost := rb().fibSaddrLocal().gotoChain(chainForwardMasq).rule()
	return []chainDef{
		{Name: "services", Rules: services},
		{Name: "input", Hook: hookInput, Rules: []nftRule{rb().verdict(expr.VerdictJump, "services").rule()}},
		{Name: "output", Hook: hookOutput, Rules: []nftRule{rb().verdict(expr.VerdictJump, "services").rule()}},
		{Name: chainForward, Rules: []nftRule{rb().accept().rule()}},
		{Name: chainForwardMasq, Rules: []nftRule{rb().markOp(fmt.Sprintf("meta mark set meta mark or 0x%x", mark), ^mark, mark).accept().rule()}},
		{Name: chainForwardCluster, Rules: append(podAccept(), masq)},
		{Name: chainForwardLocal, Rules: []nftRule{fromHost, rb().accept().rule()}},
		{Name: chainDropExternal, Rules: append(append([]nftRule{fromHost}, podAccept()...), rb().drop().rule())},
		{Name: chainDrop, Rules: []nftRule{rb().drop().rule()}},
		{Name: chainReject, Rules: []nftRule{rb().l4proto(unix.IPPROTO_TCP).rejectTCPReset().rule(), rb().rejectAny().rule()}},
		{Name: "postrouting", Hook: hookPostrouting, Rules: []nftRule{
			rb().pairIn(fam4, setHairpin+"4").masquerade(false).rule(),
			rb().pairIn(fam6, setHairpin+"6").masquerade(false).rule(),
			rb().markClear(mark).verdict(expr.VerdictReturn, "").rule(),
			rb().markOp(fmt.Sprintf("meta mark set meta mark xor 0x%x", mark), 0xffffffff, mark).rule(),
			rb().masquerade(true).rule(),
		}},
	}
}

func suffix(six bool) string {
	if six {
		return "6"
	}
	return "4"
}

// srChain is the name of k's source-range chain. It is derived from the key alone, so a restarted
// agent knows which chain an element it reads back owns.
func srChain(k vsKey) string {
	h := sha256.Sum256([]byte(k.String()))
	return "sr-" + hex.EncodeToString(h[:6])
}

// srRules are the rules of a restricted frontend's chain: its allowed ranges, then drop.
func srRules(v verdict) []nftRule {
	var out []nftRule
	if v.Ranges != "" {
		for _, r := range strings.Split(v.Ranges, ",") {
			out = append(out, rb().saddrIn(netip.MustParsePrefix(r)).gotoChain(v.Chain).rule())
		}
	}
	return append(out, rb().drop().rule())
}

// fixedVerdicts are the verdict chains a frontend element may jump to directly.
var fixedVerdicts = []string{chainForward, chainForwardMasq, chainForwardCluster, chainForwardLocal, chainDropExternal, chainDrop, chainReject}

// frontendFromKernel reads back the chain an element of an earlier run jumps to. A jump to the
// frontend's own source-range chain is restricted with ranges unknown (its rules are not read),
// so it never equals a wanted verdict and the first Apply rewrites it.
func frontendFromKernel(k vsKey, chain string) (feState, bool) {
	if chain == srChain(k) {
		return feState{Verdict: verdict{Restricted: true}, Unknown: true}, true
	}
	for _, c := range fixedVerdicts {
		if c == chain {
			return feState{Verdict: verdict{Chain: c}}, true
		}
	}
	return feState{}, false
}

// nftKernel is the seam over our nftables table: one transaction per Commit, and the reads a
// restarted agent adopts from. nftNetlink is the kernel, fakeNFT the in-memory stand-in.
type nftKernel interface {
	// Commit runs ops in order in one transaction: all of them or none.
	Commit(ops []nftOp) error
	// Frontends lists the frontend map elements: the chain each one jumps to.
	Frontends() (map[vsKey]string, error)
	// Hairpins lists the addresses of the hairpin sets.
	Hairpins() ([]netip.Addr, error)
	// Generation reads nf_tables' ruleset generation, which every committed transaction moves
	// (anyone's, on any table): see package nftgen.
	Generation() (uint32, error)
}
