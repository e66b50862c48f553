package dns

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Gate is a dataplane.Dataplane that keeps the zone behind the kernel: a name never answers with
// a ClusterIP the kernel does not serve. Before a change, it withdraws the records of ports the
// change removes or whose answers it changes; after, it publishes the ports that applied and
// puts back those that failed (a failed port keeps what it had, in the kernel and here).
// Clients may still hold an old answer for the TTL.
type Gate struct {
	dataplane.Dataplane
	table *Table
	addrs []netip.Addr
}

var _ dataplane.Dataplane = (*Gate)(nil)

// NewGate wraps dp so that t follows what it applies; Reconcile also puts addrs, the server's
// node-local addresses, back on their device (EnsureAddrs).
func NewGate(dp dataplane.Dataplane, t *Table, addrs []netip.Addr) *Gate {
	return &Gate{Dataplane: dp, table: t, addrs: addrs}
}

// Reconcile repairs the wrapped dataplane's objects and the DNS addresses: a socket bound to an
// address removed from outside receives nothing.
func (g *Gate) Reconcile(ctx context.Context) error {
	err := g.Dataplane.Reconcile(ctx)
	if len(g.addrs) > 0 {
		if _, aerr := EnsureAddrs(g.addrs); aerr != nil {
			err = errors.Join(err, aerr)
		}
	}
	return err
}

// Apply applies c to the wrapped dataplane, withdrawing before and publishing after.
func (g *Gate) Apply(ctx context.Context, c dataplane.Change) map[string]error {
	prev := map[string]*v1.ServicePort{}
	withdraw := map[string]*v1.ServicePort{}
	for _, b := range c.Removals {
		prev[b] = g.table.port(b)
		withdraw[b] = nil
	}
	for _, p := range c.Upserts {
		old := g.table.port(p.Base)
		prev[p.Base] = old
		if old != nil && !sameAnswers(old, p.Service) {
			withdraw[p.Base] = nil
		}
	}
	g.table.updatePorts(withdraw)
	failed := g.Dataplane.Apply(ctx, c)
	publish := map[string]*v1.ServicePort{}
	for _, p := range c.Upserts {
		if failed[p.Base] == nil {
			publish[p.Base] = p.Service
		} else if old := prev[p.Base]; old != nil {
			publish[p.Base] = old
		}
	}
	g.table.updatePorts(publish)
	return failed
}

// Prune withdraws the records of every port keep does not hold, then prunes the dataplane.
func (g *Gate) Prune(ctx context.Context, keep map[string]bool) error {
	g.table.keepPorts(keep)
	return g.Dataplane.Prune(ctx, keep)
}

// sameAnswers reports whether two versions of a port give the same DNS answers: the same names,
// ClusterIPs and ports.
func sameAnswers(a, b *v1.ServicePort) bool {
	if a.Namespace != b.Namespace || a.Name != b.Name || a.PortName != b.PortName || a.Protocol != b.Protocol {
		return false
	}
	return slices.Equal(clusterIPs(a), clusterIPs(b))
}

// clusterIPs lists a port's ClusterIP frontends as address:port.
func clusterIPs(p *v1.ServicePort) []string {
	var out []string
	for _, fe := range p.Frontends {
		if fe.Kind == v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP {
			out = append(out, fe.Address+":"+fmt.Sprint(fe.Port))
		}
	}
	slices.Sort(out)
	return out
}
