// Package announce makes the network send a service's outside addresses to this node, as the
// brain decides: the node answers ARP/NDP for the addresses it owns (package l2) and advertises a
// /32 or /128 route for each address it may attract to the routers it peers with (package bgp).
// The brain sends the decision per service (<ns>/<name>/announce) and the node's BGP settings
// (node/bgp); the agent hands the union of the held ones to the speakers on every change.
package announce

import (
	"net/netip"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Want is everything the node announces: the whole set, not a change.
type Want struct {
	// L2 are the addresses the node answers ARP (IPv4) and NDP (IPv6) for, sorted.
	L2 []netip.Addr
	// BGP are the addresses the node advertises as host routes, sorted.
	BGP []netip.Addr
	// BGPConfig is the node's peering; nil when the node has no BGP peers.
	BGPConfig *v1.BGPConfig
}
