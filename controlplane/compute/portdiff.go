package compute

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// DiffPorts says, node by node, how the service ports nodes are told differ between two engines:
// before a change and after it. d is the delta of that change: only the names it lists are
// compared, so a diff costs the size of the change rather than of the cluster; a node that appears,
// goes away or changes zone is compared whole. Nodes without a difference are left out.
func DiffPorts(before, after *Engine, d Delta) []*v1.NodeDiff {
	nodes := slices.Sorted(maps.Keys(before.nodes))
	for n := range after.nodes {
		if before.nodes[n] == nil {
			nodes = append(nodes, n)
		}
	}
	slices.Sort(nodes)
	var out []*v1.NodeDiff
	for _, n := range nodes {
		nd := &v1.NodeDiff{Node: n}
		for _, base := range dirtyBases(before, after, d, n) {
			if pd := diffPort(base, before.port(n, base), after.port(n, base)); pd != nil {
				nd.Ports = append(nd.Ports, pd)
			}
		}
		if len(nd.Ports) > 0 {
			out = append(out, nd)
		}
	}
	return out
}

// dirtyBases lists the port bases that may differ for node n.
func dirtyBases(before, after *Engine, d Delta, n string) []string {
	bases := map[string]bool{}
	whole := before.nodes[n] == nil || after.nodes[n] == nil || before.zoneOf(n) != after.zoneOf(n)
	if whole {
		for _, e := range []*Engine{before, after} {
			for _, p := range e.Ports(n) {
				bases[p.Base] = true
			}
		}
	} else {
		names := slices.Concat(d.Shared, d.Zones[before.zoneOf(n)], d.Zones[after.zoneOf(n)], d.Nodes[n])
		for _, name := range names {
			base, kind := resname.Split(name)
			if kind == resname.KindService || kind == resname.KindCluster || kind == resname.KindLocal {
				bases[base] = true
			}
		}
	}
	return slices.Sorted(maps.Keys(bases))
}

// port is the port base as node n is told it, or nil when the node is unknown or has no such port.
func (e *Engine) port(n, base string) *PortView {
	if e.nodes[n] == nil {
		return nil
	}
	r := e.Resolve(n, resname.Join(base, resname.KindService))
	if r == nil {
		return nil
	}
	pv := e.portView(n, base, r)
	return &pv
}

// diffPort compares one port; nil when nothing differs.
func diffPort(base string, b, a *PortView) *v1.PortDiff {
	pd := &v1.PortDiff{Resource: base, Change: v1.PortChange_PORT_CHANGE_CHANGED}
	switch {
	case b == nil && a == nil:
		return nil
	case b == nil:
		pd.Change = v1.PortChange_PORT_CHANGE_ADDED
	case a == nil:
		pd.Change = v1.PortChange_PORT_CHANGE_REMOVED
	}
	pd.FrontendsAdded, pd.FrontendsRemoved = diffFrontends(b.frontends(), a.frontends())
	var other []string
	pd.InternalGained, pd.InternalLost, other = diffBackends("internal", b.internal(), a.internal(), other)
	pd.ExternalGained, pd.ExternalLost, other = diffBackends("external", b.external(), a.external(), other)
	if b != nil && a != nil {
		other = append(other, diffSettings(b.Service, a.Service)...)
		other = noteChange(other, "internal action", actionOf(b.internal()), actionOf(a.internal()))
		other = noteChange(other, "external action", actionOf(b.external()), actionOf(a.external()))
	}
	pd.Other = other
	if pd.Change == v1.PortChange_PORT_CHANGE_CHANGED && len(pd.FrontendsAdded)+len(pd.FrontendsRemoved)+len(pd.InternalGained)+
		len(pd.InternalLost)+len(pd.ExternalGained)+len(pd.ExternalLost)+len(pd.Other) == 0 {
		return nil
	}
	return pd
}

func (p *PortView) frontends() []*v1.Frontend {
	if p == nil {
		return nil
	}
	return p.Service.GetFrontends()
}

func (p *PortView) internal() *v1.EndpointSet {
	if p == nil {
		return nil
	}
	return p.Set(p.Service.GetInternal())
}

func (p *PortView) external() *v1.EndpointSet {
	if p == nil || p.Service.GetExternal() == nil {
		return nil
	}
	return p.Set(p.Service.GetExternal())
}

func diffFrontends(b, a []*v1.Frontend) (added, removed []*v1.Frontend) {
	key := func(f *v1.Frontend) string {
		return fmt.Sprint(f.Kind, f.Address, f.Port, f.SourceRanges)
	}
	return setDiff(b, a, key)
}

// diffBackends returns the endpoints gained and lost by address and port, and notes weight and
// terminating changes of the endpoints kept.
func diffBackends(traffic string, b, a *v1.EndpointSet, other []string) (gained, lost []*v1.Backend, _ []string) {
	key := func(x *v1.Backend) string { return fmt.Sprintf("%s:%d", x.Address, x.Port) }
	gained, lost = setDiff(b.GetBackends(), a.GetBackends(), key)
	kept := map[string]*v1.Backend{}
	for _, x := range b.GetBackends() {
		kept[key(x)] = x
	}
	for _, x := range a.GetBackends() {
		if old := kept[key(x)]; old != nil {
			other = noteChange(other, traffic+" "+key(x)+" weight", fmt.Sprint(old.Weight), fmt.Sprint(x.Weight))
			other = noteChange(other, traffic+" "+key(x)+" terminating", fmt.Sprint(old.Terminating), fmt.Sprint(x.Terminating))
		}
	}
	return gained, lost, other
}

// setDiff returns what a has and b lacks, and what b has and a lacks, in their own order.
func setDiff[T proto.Message](b, a []T, key func(T) string) (added, removed []T) {
	in := func(list []T) map[string]bool {
		m := map[string]bool{}
		for _, x := range list {
			m[key(x)] = true
		}
		return m
	}
	inB, inA := in(b), in(a)
	for _, x := range a {
		if !inB[key(x)] {
			added = append(added, x)
		}
	}
	for _, x := range b {
		if !inA[key(x)] {
			removed = append(removed, x)
		}
	}
	return added, removed
}

// diffSettings lists the changes of a port's other settings as "field: old -> new".
func diffSettings(b, a *v1.ServicePort) []string {
	var out []string
	out = noteChange(out, "scheduler", b.Scheduler, a.Scheduler)
	out = noteChange(out, "session affinity", affinity(b), affinity(a))
	out = noteChange(out, "internal policy", policy(b.Internal), policy(a.Internal))
	out = noteChange(out, "external policy", policy(b.External), policy(a.External))
	out = noteChange(out, "health check node port", fmt.Sprint(b.HealthCheckNodePort), fmt.Sprint(a.HealthCheckNodePort))
	return out
}

func noteChange(out []string, field, old, new string) []string {
	if old == new {
		return out
	}
	return append(out, fmt.Sprintf("%s: %s -> %s", field, old, new))
}

func affinity(p *v1.ServicePort) string {
	if p.SessionAffinity == nil {
		return "None"
	}
	return fmt.Sprintf("ClientIP %ds", p.SessionAffinity.TimeoutSeconds)
}

func policy(p *v1.TrafficPolicy) string {
	if p == nil {
		return "none"
	}
	s := strings.ToLower(strings.TrimPrefix(p.Scope.String(), "ENDPOINT_SCOPE_"))
	if p.Masquerade {
		s += ", masquerade"
	}
	return s
}

func actionOf(s *v1.EndpointSet) string {
	if s == nil {
		return "none"
	}
	return strings.TrimPrefix(s.Action.String(), "TRAFFIC_ACTION_")
}
