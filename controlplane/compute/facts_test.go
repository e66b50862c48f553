package compute

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// portFacts is everything semantics.md decides about one service port in one family on one node,
// in a form both the oracle and the engine's output can be rendered into and compared as text.
type portFacts struct {
	service   string
	frontends []string
	scheduler string
	affinity  uint32
	internal  string   // "<scope> <set>"
	external  string   // "" when the port has no external destination
	held      []string // the endpoint sets the node holds for the port: cluster, local
}

// String renders the facts one per line, frontends and held sets sorted: their order carries no
// meaning.
func (f portFacts) String() string {
	fe := slices.Sorted(slices.Values(f.frontends))
	fe = slices.Compact(fe)
	held := slices.Sorted(slices.Values(f.held))
	s := fmt.Sprintf("%s\n  frontends: %s\n  scheduler=%q affinity=%d\n  internal: %s\n",
		f.service, strings.Join(fe, "; "), f.scheduler, f.affinity, f.internal)
	if f.external != "" {
		s += "  external: " + f.external + "\n"
	}
	return s + "  held: " + strings.Join(held, " ")
}

// renderSet renders an endpoint set: action, backends sorted, and the local ready count if any.
func renderSet(action string, backends []string, localReady int) string {
	s := strings.Join(append([]string{action}, slices.Sorted(slices.Values(backends))...), " ")
	if localReady > 0 {
		s += fmt.Sprintf(" ready=%d", localReady)
	}
	return s
}

// renderBackend renders one backend: address:port, "*w" for a weight other than 1, "~" for a
// terminating fallback.
func renderBackend(ap netip.AddrPort, weight uint32, fallback bool) string {
	s := ap.String()
	if weight != 1 {
		s += fmt.Sprintf("*%d", weight)
	}
	if fallback {
		s += "~"
	}
	return s
}

// materialised reads node's state as an agent receives it: every resource the engine holds for
// node with its layers resolved, decoded from its wire bytes, grouped by port. An agent gets its
// full state through ForEach (NodeState) and later changes through Resolve, so every name in the
// state, and every name in also, must resolve alike both ways.
func materialised(e *Engine, node string, also []string) (map[string]string, error) {
	byBase := map[string]map[string]*v1.Resource{}
	state := e.NodeState(node)
	held := map[string]string{}
	for _, r := range state {
		held[r.Name] = r.Version
	}
	for _, name := range append(slices.Collect(maps.Keys(held)), also...) {
		if got := e.Resolve(node, name); version(got) != held[name] {
			return nil, fmt.Errorf("%s: Resolve gives version %q, the full state %q", name, version(got), held[name])
		}
	}
	for _, r := range state {
		var msg v1.Resource
		if err := proto.Unmarshal(r.Wire, &msg); err != nil {
			return nil, fmt.Errorf("%s: wire bytes do not decode: %w", r.Name, err)
		}
		if msg.Name != r.Name || msg.Version != r.Version {
			return nil, fmt.Errorf("%s@%s: wire says %s@%s", r.Name, r.Version, msg.Name, msg.Version)
		}
		i := strings.LastIndexByte(r.Name, '/')
		base, kind := r.Name[:i], r.Name[i+1:]
		if kind == "probes" {
			continue
		}
		if byBase[base] == nil {
			byBase[base] = map[string]*v1.Resource{}
		}
		byBase[base][kind] = &msg
	}
	out := map[string]string{}
	type hc struct {
		port  uint32
		ready bool
	}
	hcs := map[string]hc{}
	for base, kinds := range byBase {
		sp := kinds["service"].GetService()
		if sp == nil {
			out[base] = fmt.Sprintf("endpoint sets without a service: %v", slices.Sorted(maps.Keys(kinds)))
			continue
		}
		f := portFacts{
			service:   fmt.Sprintf("%s/%s port=%q family=%s protocol=%s", sp.Namespace, sp.Name, sp.PortName, familyName(sp.Family), strings.TrimPrefix(sp.Protocol.String(), "PROTOCOL_")),
			scheduler: sp.Scheduler,
			affinity:  sp.GetSessionAffinity().GetTimeoutSeconds(),
		}
		for _, fe := range sp.Frontends {
			s := fmt.Sprintf("%s %s:%d", strings.TrimPrefix(fe.Kind.String(), "FRONTEND_KIND_"), bracket(fe.Address), fe.Port)
			if len(fe.SourceRanges) > 0 {
				s += " from " + strings.Join(fe.SourceRanges, ",")
			}
			f.frontends = append(f.frontends, s)
		}
		for kind := range kinds {
			if kind != "service" {
				f.held = append(f.held, kind)
			}
		}
		f.internal = scopeFacts(sp.Internal, kinds)
		if sp.External != nil {
			f.external = scopeFacts(sp.External, kinds)
		}
		out[base] = f.String()
		if sp.HealthCheckNodePort != 0 {
			key := sp.Namespace + "/" + sp.Name + " healthCheckNodePort"
			prev := hcs[key]
			if prev.port != 0 && prev.port != sp.HealthCheckNodePort {
				return nil, fmt.Errorf("%s: ports disagree on the health check port: %d and %d", key, prev.port, sp.HealthCheckNodePort)
			}
			hcs[key] = hc{sp.HealthCheckNodePort, prev.ready || kinds["local"].GetEndpoints().GetLocalReadyEndpoints() > 0}
		}
	}
	for key, h := range hcs {
		out[key] = fmt.Sprintf("port=%d local_ready=%v", h.port, h.ready)
	}
	return out, nil
}

// scopeFacts renders the policy and the set it names, "MISSING" when the node does not hold it.
func scopeFacts(pol *v1.TrafficPolicy, kinds map[string]*v1.Resource) string {
	scope, kind := "cluster", "cluster"
	if pol.GetScope() == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL {
		scope, kind = "local", "local"
	}
	if pol.GetMasquerade() {
		scope += ",masq"
	}
	set := kinds[kind].GetEndpoints()
	if set == nil {
		return scope + " MISSING"
	}
	var backends []string
	for _, b := range set.Backends {
		addr, err := netip.ParseAddr(b.Address)
		if err != nil {
			return fmt.Sprintf("%s bad backend address %q", scope, b.Address)
		}
		backends = append(backends, renderBackend(netip.AddrPortFrom(addr, uint16(b.Port)), b.Weight, b.Terminating))
	}
	return scope + " " + renderSet(strings.TrimPrefix(set.Action.String(), "TRAFFIC_ACTION_"), backends, int(set.LocalReadyEndpoints))
}

func familyName(f v1.IPFamily) string {
	switch f {
	case v1.IPFamily_IP_FAMILY_IPV4:
		return "v4"
	case v1.IPFamily_IP_FAMILY_IPV6:
		return "v6"
	}
	return f.String()
}

func bracket(addr string) string {
	if strings.Contains(addr, ":") {
		return "[" + addr + "]"
	}
	return addr
}
