package nftables

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
)

// Names of the table-wide objects. They contain a '-' before any '_', so parseObjectName never
// mistakes them for a port's.
const (
	setEndpoints     = "endpoints"      // endpoints-00 ... : set id . slot : backend address . port, see slotBits
	setVIPs          = "frontend-ips"   // address . proto . port : verdict, for ClusterIP, LB and external IPs
	setNodePorts     = "node-ports"     // proto . port : verdict
	setNodePortAddrs = "nodeport-addrs" // node addresses that accept NodePorts
	setClusterIPs    = "cluster-ips"    // ClusterIPs, for rejecting their unknown ports
	setHairpin       = "hairpin-pairs"  // endpoint . endpoint, for masquerading a pod reaching itself

	chainNatPrerouting  = "nat-prerouting"
	chainNatOutput      = "nat-output"
	chainNatPostrouting = "nat-postrouting"
	chainServices       = "services"
	chainMasquerading   = "masquerading"
	chainNonPodMasq     = "masq-non-pod"
	chainFilterInput    = "filter-input"
	chainFilterForward  = "filter-forward"
	chainFilterOutput   = "filter-output"
	chainRejectCheck    = "reject-check"
)

// skeletonChain is a table-wide chain, optionally attached to a hook.
type skeletonChain struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	rules    []rule
}

// skeleton is the part of the table every port shares; it depends only on the node.
type skeleton struct {
	sets   []*nftables.Set
	chains []skeletonChain
	// nodePortAddrs are the elements of setNodePortAddrs.
	nodePortAddrs []netip.Addr
}

func newSkeleton(f *family, cfg *renderConfig, nodePortAddrs []netip.Addr) (*skeleton, error) {
	sets, err := skeletonSets(f)
	if err != nil {
		return nil, err
	}
	return &skeleton{sets: sets, chains: skeletonChains(f, cfg), nodePortAddrs: nodePortAddrs}, nil
}

// skeletonSets are the table-wide sets. Sets are found by a linear search of the table's sets:
// the ones every change touches come first, before any per-port set.
func skeletonSets(f *family) ([]*nftables.Set, error) {
	vipType, err := nftables.ConcatSetType(f.addrType, nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	npType, err := nftables.ConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	pairType, err := nftables.ConcatSetType(f.addrType, f.addrType)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	epType, err := nftables.ConcatSetType(f.addrType, nftables.TypeInetService)
	if err != nil {
		return nil, fmt.Errorf("concat type: %w", err)
	}
	sets, err := staticDataSets(f)
	if err != nil {
		return nil, err
	}
	sets = append(sets, []*nftables.Set{
		{Name: setVIPs, KeyType: vipType, DataType: nftables.TypeVerdict, IsMap: true, Concatenation: true},
		{Name: setNodePorts, KeyType: npType, DataType: nftables.TypeVerdict, IsMap: true, Concatenation: true},
		{Name: setNodePortAddrs, KeyType: f.addrType},
		{Name: setClusterIPs, KeyType: f.addrType},
		{Name: setHairpin, KeyType: pairType, Concatenation: true},
	}...)
	for i := range uint32(endpointBuckets) {
		sets = append(sets, &nftables.Set{Name: bucketOf(i), KeyType: nftables.TypeInteger, DataType: epType, IsMap: true, Interval: true})
	}
	return sets, nil
}

// skeletonChains are the table-wide chains, base chains last in creation order, so the chains
// they jump to exist.
func skeletonChains(f *family, cfg *renderConfig) []skeletonChain {
	nat, filter := nftables.ChainTypeNAT, nftables.ChainTypeFilter
	var nonPod []rule
	for _, p := range cfg.podCIDRs {
		nonPod = append(nonPod, newRule(f).saddrIn(p).ret().build())
	}
	nonPod = append(nonPod, newRule(f).setMark(cfg.masqBit).build())
	check := []rule{newRule(f).ctNew().jump(chainRejectCheck).build()}
	return []skeletonChain{
		{name: chainNonPodMasq, rules: nonPod},
		{name: chainServices}, // its rules depend on the classes in use: see servicesRules
		{name: chainMasquerading, rules: []rule{
			newRule(f).markSet(cfg.masqBit).clearMark(cfg.masqBit).masquerade().build(),
			newRule(f).addrPairInSet(setHairpin).masquerade().build(),
		}},
		{name: chainRejectCheck, rules: []rule{
			newRule(f).markSet(cfg.rejectBit).reject().build(),
			newRule(f).addrInSet("daddr", setClusterIPs).reject().build(),
		}},
		{name: chainNatPrerouting, typ: nat, hook: nftables.ChainHookPrerouting, priority: nftables.ChainPriorityNATDest,
			rules: []rule{newRule(f).jump(chainServices).build()}},
		{name: chainNatOutput, typ: nat, hook: nftables.ChainHookOutput, priority: nftables.ChainPriorityNATDest,
			rules: []rule{newRule(f).jump(chainServices).build()}},
		{name: chainNatPostrouting, typ: nat, hook: nftables.ChainHookPostrouting, priority: nftables.ChainPriorityNATSource,
			rules: []rule{newRule(f).jump(chainMasquerading).build()}},
		// The filter chains run after DNAT: a packet still addressed to a ClusterIP was not
		// matched by any port, and a packet with the reject bit belongs to a port without endpoints.
		{name: chainFilterInput, typ: filter, hook: nftables.ChainHookInput, priority: nftables.ChainPriorityFilter, rules: check},
		{name: chainFilterForward, typ: filter, hook: nftables.ChainHookForward, priority: nftables.ChainPriorityFilter, rules: check},
		{name: chainFilterOutput, typ: filter, hook: nftables.ChainHookOutput, priority: nftables.ChainPriorityRef(-90), rules: check},
	}
}
