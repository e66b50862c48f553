// Package dataplane is the agent's narrow interface to the kernel. The brain sends resources; the
// agent groups them per service port (see Port) and hands them to one backend: nftables or IPVS.
package dataplane

import (
	"context"
	"net/netip"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Port is everything a backend needs to program one service port in one IP family.
type Port struct {
	// Base is the common prefix of the port's resource names: <ns>/<name>[:<port>]/<v4|v6>.
	Base    string
	Service *v1.ServicePort
	// Cluster and Local are the endpoint sets the port's policies name; nil when unused.
	Cluster *v1.EndpointSet
	Local   *v1.EndpointSet
}

// Change is one batch for a backend.
type Change struct {
	// Upserts create or replace whole ports.
	Upserts []Port
	// Removals name the bases of ports to delete.
	Removals []string
}

// Node is what a backend knows about the node it runs on.
type Node struct {
	Name string
	// Addresses are the node's own addresses: NodePort frontends listen on those that
	// NodePortAddresses allows (all of them when it is empty).
	Addresses         []netip.Addr
	NodePortAddresses []netip.Prefix
	// PodCIDRs are the addresses of pods on this node: their traffic to an external frontend is
	// treated as internal (the short-circuit), and traffic from elsewhere that reaches a ClusterIP
	// is masqueraded.
	PodCIDRs []netip.Prefix
}

// Dataplane programs service ports into the kernel. Implementations own their kernel objects
// (prefixed tables, devices) and never touch others'. Calls are serialized by the caller.
type Dataplane interface {
	// Apply programs a change. It returns an error per base that could not be applied; such a port
	// keeps whatever it had before, and every other port of the change is applied.
	Apply(ctx context.Context, c Change) map[string]error
	// Prune removes every port the backend owns whose base keep does not hold, including ports an
	// earlier run of the agent left behind. The agent calls it once its state is complete, so a
	// restart never flushes working rules.
	Prune(ctx context.Context, keep map[string]bool) error
	// Reconcile repairs kernel objects changed from outside to match what was last applied.
	Reconcile(ctx context.Context) error
	// Close releases handles; it leaves the rules in place.
	Close() error
}

// PlanReporter is a backend that keeps the plan it last committed, in its printable form, for
// the agent's /debug/plan: the exact operations of the last change that reached the kernel.
type PlanReporter interface {
	LastPlan() string
}
