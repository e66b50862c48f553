package model

import "net/netip"

// ZoneLabel is the well-known label that carries a node's zone.
const ZoneLabel = "topology.kubernetes.io/zone"

// Node is one machine running an agent.
type Node struct {
	Name      string
	Zone      string
	Addresses []netip.Addr
	Labels    map[string]string
	Ready     bool
	// Live is true while an agent of the node is connected (bare metal: to any brain replica);
	// only live, ready nodes announce service addresses. The Kubernetes source sets it from the
	// Ready condition.
	Live bool
}
