// Package resname builds and splits resource names, the contract between brain and agent:
// <ns>/<name>[:<port>]/<v4|v6>/<kind>. The part before the kind is the port's base; the agent
// programs a base's resources together.
package resname

import "strings"

// Resource kinds: the last element of a resource name.
const (
	KindService = "service"
	KindCluster = "cluster"
	KindLocal   = "local"
	// KindProbes is a per-node ProbeSet; its base is <ns>/<name>, not a port.
	KindProbes = "probes"
	// KindDNS is a DNSRecords shared by every node; its base is <ns>/<name>, not a port. Only
	// agents announcing CapabilityDNS receive it.
	KindDNS = "dns"
	// KindAnnounce is a per-node Announcement of a service's outside addresses; its base is
	// <ns>/<name>, not a port.
	KindAnnounce = "announce"
	// KindBGP is the kind of NodeBGP.
	KindBGP = "bgp"
)

// NodeBGP names a node's BGPConfig. It has two elements where service resources have three or
// more, so no service's resource can take its name.
const NodeBGP = "node/" + KindBGP

// Announce names a service's announcement: <ns>/<name>/announce.
func Announce(namespace, name string) string { return Join(namespace+"/"+name, KindAnnounce) }

// CapabilityDNS is the Hello capability of an agent that serves DNS and wants KindDNS resources.
const CapabilityDNS = "dns"

// DNS names a service's DNS records: <ns>/<name>/dns.
func DNS(namespace, name string) string { return Join(namespace+"/"+name, KindDNS) }

// ParseDNS splits a DNS records name into its service's namespace and name; ok is false for any
// other name.
func ParseDNS(resource string) (namespace, name string, ok bool) {
	base, kind := Split(resource)
	if kind != KindDNS {
		return "", "", false
	}
	namespace, name, ok = strings.Cut(base, "/")
	if !ok || namespace == "" || name == "" || strings.ContainsRune(name, '/') {
		return "", "", false
	}
	return namespace, name, true
}

// IsDNS reports whether a resource name is a DNS records name.
func IsDNS(resource string) bool {
	_, _, ok := ParseDNS(resource)
	return ok
}

// Join joins a service port's base name and a kind.
func Join(base, kind string) string { return base + "/" + kind }

// Split splits a resource name into its base and kind.
func Split(name string) (base, kind string) {
	i := strings.LastIndexByte(name, '/')
	if i < 0 {
		return name, ""
	}
	return name[:i], name[i+1:]
}
