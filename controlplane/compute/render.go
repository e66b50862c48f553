package compute

import (
	"fmt"
	"io"
	"strings"

	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// PortView is one service port in one family as a node sees it.
type PortView struct {
	Base    string
	Service *v1.ServicePort
	Cluster *v1.EndpointSet // nil when the port does not use the cluster set
	Local   *v1.EndpointSet // nil when the port does not use the local set
}

// Ports returns node's service ports, sorted by base name.
func (e *Engine) Ports(node string) []PortView {
	var out []PortView
	for _, r := range e.NodeState(node) {
		base, kind := resname.Split(r.Name)
		if kind != resname.KindService {
			continue
		}
		out = append(out, e.portView(node, base, r))
	}
	return out
}

// portView assembles a port as node sees it from its service resource.
func (e *Engine) portView(node, base string, service *Resource) PortView {
	return PortView{
		Base:    base,
		Service: service.Msg.GetService(),
		Cluster: e.Resolve(node, resname.Join(base, resname.KindCluster)).GetMsg().GetEndpoints(),
		Local:   e.Resolve(node, resname.Join(base, resname.KindLocal)).GetMsg().GetEndpoints(),
	}
}

// Set returns the endpoint set a policy names.
func (p PortView) Set(pol *v1.TrafficPolicy) *v1.EndpointSet {
	if pol.GetScope() == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL {
		return p.Local
	}
	return p.Cluster
}

// Summary renders the port's traffic handling on one line, e.g.
// "internal=cluster FORWARD 10.1.0.1:80 | external=local DROP".
func (p PortView) Summary() string {
	s := "internal=" + policyString(p.Service.Internal) + " " + FormatSet(p.Set(p.Service.Internal))
	if p.Service.External != nil {
		s += " | external=" + policyString(p.Service.External) + " " + FormatSet(p.Set(p.Service.External))
	}
	return s
}

func policyString(pol *v1.TrafficPolicy) string {
	s := "cluster"
	if pol.GetScope() == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL {
		s = "local"
	}
	if pol.GetMasquerade() {
		s += ",masq"
	}
	return s
}

// FormatSet renders an endpoint set as its action and backends; terminating backends end in "~",
// weights other than 1 follow "*".
func FormatSet(set *v1.EndpointSet) string {
	if set == nil {
		return "MISSING"
	}
	var b strings.Builder
	b.WriteString(strings.TrimPrefix(set.Action.String(), "TRAFFIC_ACTION_"))
	for _, be := range set.Backends {
		addr := be.Address
		if strings.Contains(addr, ":") {
			addr = "[" + addr + "]"
		}
		fmt.Fprintf(&b, " %s:%d", addr, be.Port)
		if be.Weight != 1 {
			fmt.Fprintf(&b, "*%d", be.Weight)
		}
		if be.Terminating {
			b.WriteString("~")
		}
	}
	return b.String()
}

// Render writes every port of node in a form meant for people: the demo and the golden tests.
func (e *Engine) Render(w io.Writer, node string) {
	fmt.Fprintf(w, "node %s", node)
	if z := e.zoneOf(node); z != "" {
		fmt.Fprintf(w, " (zone %s)", z)
	}
	fmt.Fprintln(w)
	for _, p := range e.Ports(node) {
		sp := p.Service
		fmt.Fprintf(w, "  %s %s", p.Base, strings.TrimPrefix(sp.Protocol.String(), "PROTOCOL_"))
		if sp.Scheduler != "" {
			fmt.Fprintf(w, " scheduler=%s", sp.Scheduler)
		}
		if sp.SessionAffinity != nil {
			fmt.Fprintf(w, " affinity=%ds", sp.SessionAffinity.TimeoutSeconds)
		}
		if sp.HealthCheckNodePort != 0 {
			fmt.Fprintf(w, " healthCheckNodePort=%d(local-ready=%d)", sp.HealthCheckNodePort, p.Local.GetLocalReadyEndpoints())
		}
		fmt.Fprintln(w)
		var fe []string
		for _, f := range sp.Frontends {
			addr := f.Address
			if addr == "" {
				addr = "*"
			} else if strings.Contains(addr, ":") {
				addr = "[" + addr + "]"
			}
			s := fmt.Sprintf("%s %s:%d", strings.TrimPrefix(f.Kind.String(), "FRONTEND_KIND_"), addr, f.Port)
			if len(f.SourceRanges) > 0 {
				s += " from " + strings.Join(f.SourceRanges, ",")
			}
			fe = append(fe, s)
		}
		fmt.Fprintf(w, "    frontends: %s\n", strings.Join(fe, "; "))
		fmt.Fprintf(w, "    internal:  %s %s\n", policyString(sp.Internal), FormatSet(p.Set(sp.Internal)))
		if sp.External != nil {
			fmt.Fprintf(w, "    external:  %s %s\n", policyString(sp.External), FormatSet(p.Set(sp.External)))
		}
	}
}
