package l2

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ownedDevicePrefix names the devices Ganglion creates (the IPVS dummy device, the DNS device):
// their addresses are service addresses, not the node's, and they are no link to answer on.
// Dummy devices of other names count as the same (the IPVS device's name is an option, and
// kube-proxy's kube-ipvs0 is one too): a dummy reaches no link, it only makes addresses local.
const ownedDevicePrefix = "ganglion"

// link is an interface the speaker can answer on, with its address prefixes.
type link struct {
	ifi      net.Interface
	prefixes []netip.Prefix
}

// snapshot is the node's interfaces at one Set: where each address can be answered.
type snapshot struct {
	links  []link                   // up, non-loopback Ethernet interfaces, in index order
	byName map[string]net.Interface // the same, by name
	own    map[netip.Addr]string    // the node's own addresses, to the device holding them
	// defaults are the interfaces of the IPv4 and IPv6 default routes (lowest metric), if any.
	default4, default6 string
	// routeErr is why a family's default route could not be read (IPv6 disabled, say): the
	// family's addresses off every subnet go unanswered, the rest are placed as usual.
	routeErr error
}

// takeSnapshot reads the interfaces and default routes of the calling thread's network namespace.
func takeSnapshot() (snapshot, error) {
	ifis, err := net.Interfaces()
	if err != nil {
		return snapshot{}, fmt.Errorf("interfaces: %w", err)
	}
	kinds, err := linkKinds()
	if err != nil {
		return snapshot{}, err
	}
	snap := snapshot{byName: map[string]net.Interface{}, own: map[netip.Addr]string{}}
	names := map[int]string{}
	for _, ifi := range ifis {
		holder := serviceHolder(ifi, kinds[ifi.Index])
		addrs, err := ifi.Addrs()
		if err != nil {
			return snapshot{}, fmt.Errorf("addresses of %s: %w", ifi.Name, err)
		}
		var prefixes []netip.Prefix
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err != nil {
				continue
			}
			prefixes = append(prefixes, p)
			if !holder {
				snap.own[p.Addr().WithZone("")] = ifi.Name
			}
		}
		if holder || !usable(ifi, kinds[ifi.Index]) {
			continue
		}
		names[ifi.Index] = ifi.Name
		snap.links = append(snap.links, link{ifi: ifi, prefixes: prefixes})
		snap.byName[ifi.Name] = ifi
	}
	var err4, err6 error
	snap.default4, err4 = defaultRoute(unix.AF_INET, names)
	snap.default6, err6 = defaultRoute(unix.AF_INET6, names)
	snap.routeErr = errors.Join(err4, err6)
	return snap, nil
}

// linkKind is what net.Interface does not tell of a link.
type linkKind struct {
	typ   string // netlink's link type: "dummy", "veth", "device", ...
	noARP bool
}

// linkKinds returns the kind of every link, by index.
func linkKinds() (map[int]linkKind, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, fmt.Errorf("links: %w", err)
	}
	kinds := make(map[int]linkKind, len(links))
	for _, l := range links {
		a := l.Attrs()
		kinds[a.Index] = linkKind{typ: l.Type(), noARP: a.RawFlags&unix.IFF_NOARP != 0}
	}
	return kinds, nil
}

// serviceHolder reports a device that holds service addresses rather than the node's: one of
// Ganglion's, or any dummy.
func serviceHolder(ifi net.Interface, k linkKind) bool {
	return strings.HasPrefix(ifi.Name, ownedDevicePrefix) || k.typ == "dummy"
}

// usable reports whether ARP and NDP can be answered on ifi: it is up, not loopback, does ARP,
// and has an Ethernet MAC to answer with.
func usable(ifi net.Interface, k linkKind) bool {
	return ifi.Flags&net.FlagUp != 0 && ifi.Flags&net.FlagLoopback == 0 && !k.noARP && len(ifi.HardwareAddr) == 6
}

// defaultRoute returns the usable interface of the main table's lowest-metric default route of
// family, or "" when there is none.
func defaultRoute(family int, usable map[int]string) (string, error) {
	routes, err := netlink.RouteListFiltered(family, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return "", fmt.Errorf("default route (family %d): %w", family, err)
	}
	best, bestMetric := "", 0
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		idx := r.LinkIndex
		if idx == 0 && len(r.MultiPath) > 0 {
			idx = r.MultiPath[0].LinkIndex
		}
		name, ok := usable[idx]
		if !ok {
			continue
		}
		if best == "" || r.Priority < bestMetric {
			best, bestMetric = name, r.Priority
		}
	}
	return best, nil
}

// choose returns the names of the interfaces to answer for a on. Without a restriction: every
// interface with a prefix containing a (the link a client on that subnet resolves it on), else the
// default route's interface of a's family (where an upstream router resolves it). With one: the
// listed interfaces with a prefix containing a, else all listed ones, since the operator said the
// address's clients are there (a VIP subnet the node has no address in, say).
func (s snapshot) choose(a netip.Addr, only []string) []string {
	var onSubnet, listed []string
	for _, l := range s.links {
		allowed := len(only) == 0 || slices.Contains(only, l.ifi.Name)
		if !allowed {
			continue
		}
		listed = append(listed, l.ifi.Name)
		for _, p := range l.prefixes {
			// A host prefix holding a itself would be the node's own address, already left out.
			if p.Addr().Is4() == a.Is4() && p.Bits() < p.Addr().BitLen() && p.Masked().Contains(a) {
				onSubnet = append(onSubnet, l.ifi.Name)
				break
			}
		}
	}
	if len(onSubnet) > 0 {
		return onSubnet
	}
	if len(only) > 0 {
		return listed
	}
	def := s.default4
	if a.Is6() {
		def = s.default6
	}
	if def == "" {
		return nil
	}
	return []string{def}
}
