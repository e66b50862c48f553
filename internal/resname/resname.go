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
)

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
