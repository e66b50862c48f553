package compute

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// The oracle: ../shared/design/semantics.md read as naively as possible and evaluated for one node
// straight from the model. It shares nothing with the engine (no targetsFor, clusterSet, layers,
// Resolve or IgnoredReason) and rescans every endpoint for every node, so that a reader can check
// it against the prose line by line. TestLayersMatchTheRulesOnEveryNode compares it with what the
// engine materialises.

// naiveModel is the cluster as the test handed it to the engine.
type naiveModel struct {
	opts     Options
	services map[model.ServiceKey]*model.Service
	slices   map[model.SliceKey]*model.EndpointSlice
	nodes    map[string]*model.Node
}

// naiveEndpoint is one endpoint of one service port, with the target port its slice gives it.
type naiveEndpoint struct {
	model.Endpoint
	port uint16
}

// expect returns, for every proxied service port of every family, the facts node must see (see
// portFacts), keyed by the port's base name; and one entry per service that serves a
// healthCheckNodePort.
func (m *naiveModel) expect(node string) map[string]string {
	zone := ""
	if n := m.nodes[node]; n != nil {
		zone = n.Zone
	}
	out := map[string]string{}
	for _, svc := range m.services {
		if !naiveProxied(svc, m.opts) {
			continue
		}
		for _, port := range svc.Ports {
			for _, vip := range svc.ClusterIPs {
				base, facts := m.expectPort(svc, port, vip, node, zone)
				out[base] = facts.String()
			}
		}
		if hc, ok := m.expectHealthCheck(svc, node); ok {
			out[svc.Namespace+"/"+svc.Name+" healthCheckNodePort"] = hc
		}
	}
	return out
}

// naiveProxied reads "Services that are not proxied".
func naiveProxied(svc *model.Service, opts Options) bool {
	if svc.Type == model.TypeExternalName || svc.Headless || len(svc.ClusterIPs) == 0 {
		return false
	}
	if _, ok := svc.Labels["service.kubernetes.io/headless"]; ok {
		return false
	}
	owner, ok := svc.Labels["service.kubernetes.io/service-proxy-name"]
	// Any owner is another proxy, unless we were started under that very name.
	return !ok || (opts.ProxyName != "" && owner == opts.ProxyName)
}

func naiveFamily(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "v4"
	}
	return "v6"
}

func (m *naiveModel) expectPort(svc *model.Service, port model.ServicePort, vip netip.Addr, node, zone string) (string, portFacts) {
	fam := naiveFamily(vip)
	base := svc.Namespace + "/" + svc.Name
	if port.Name != "" {
		base += ":" + port.Name
	}
	base += "/" + fam
	f := portFacts{
		service:   fmt.Sprintf("%s/%s port=%q family=%s protocol=%s", svc.Namespace, svc.Name, port.Name, fam, port.Protocol),
		scheduler: svc.Scheduler,
		affinity:  svc.AffinityTimeoutSeconds,
	}

	// Inputs, per service port.
	f.frontends = append(f.frontends, fmt.Sprintf("CLUSTER_IP %s", netip.AddrPortFrom(vip, port.Port)))
	external := false
	if port.NodePort != 0 {
		f.frontends = append(f.frontends, fmt.Sprintf("NODE_PORT :%d", port.NodePort))
		external = true
	}
	if svc.Type == model.TypeLoadBalancer {
		var ranges []string
		for _, r := range svc.LoadBalancerSourceRanges {
			if naiveFamily(r.Addr()) == fam {
				ranges = append(ranges, r.Masked().String())
			}
		}
		for _, ing := range svc.LoadBalancerIngress {
			if ing.IP.IsValid() && naiveFamily(ing.IP) == fam && (ing.IPMode == "" || ing.IPMode == model.IPModeVIP) {
				fe := fmt.Sprintf("LOAD_BALANCER %s", netip.AddrPortFrom(ing.IP, port.Port))
				if len(ranges) > 0 {
					fe += " from " + strings.Join(ranges, ",")
				}
				f.frontends = append(f.frontends, fe)
				external = true
			}
		}
	}
	for _, ip := range svc.ExternalIPs {
		if naiveFamily(ip) == fam {
			f.frontends = append(f.frontends, fmt.Sprintf("EXTERNAL_IP %s", netip.AddrPortFrom(ip, port.Port)))
			external = true
		}
	}
	itpLocal := svc.InternalTrafficLocal
	etpLocal := svc.ExternalTrafficLocal &&
		(svc.Type == model.TypeNodePort || svc.Type == model.TypeLoadBalancer || len(svc.ExternalIPs) > 0)
	usesCluster := !itpLocal || external
	usesLocal := itpLocal || (etpLocal && external)

	eps := m.endpointsOf(svc, port, fam)
	hasAny := false
	for _, e := range eps {
		if e.Ready || (e.Serving && e.Terminating) {
			hasAny = true
		}
	}
	// The action of an empty set, from the outcomes table.
	empty := "DROP"
	if !hasAny {
		empty = "REJECT"
	}
	cluster := naiveSet(naiveClusterSet(eps, node, zone), empty, 0)
	localEps := naiveLocalSet(eps, node)
	local := naiveSet(localEps, empty, naiveDistinctReady(localEps))

	if usesCluster {
		f.held = append(f.held, "cluster")
	}
	// The healthCheckNodePort of an ETP Local load balancer reports the local set on every node,
	// whether or not this port's traffic uses it.
	if usesLocal || (svc.HealthCheckNodePort != 0 && svc.Type == model.TypeLoadBalancer && svc.ExternalTrafficLocal) {
		f.held = append(f.held, "local")
	}
	if itpLocal {
		f.internal = "local " + local
	} else {
		f.internal = "cluster " + cluster
	}
	switch {
	case !external:
	case etpLocal:
		f.external = "local " + local // the client IP is preserved
	default:
		f.external = "cluster,masq " + cluster
	}
	return base, f
}

// endpointsOf gathers the endpoints of one service port in one family: from the slices of the
// service in that family, each resolving the port by name and protocol. An address:port listed
// twice keeps its non-terminating copy; between copies alike in that, the first in slice-name
// order (the engine's documented tie-break, which semantics.md leaves open).
func (m *naiveModel) endpointsOf(svc *model.Service, port model.ServicePort, fam string) []naiveEndpoint {
	var names []string
	for k, sl := range m.slices {
		if sl.Namespace == svc.Namespace && sl.Service == svc.Name && sl.Family.String() == fam {
			names = append(names, k.Name)
		}
	}
	slices.Sort(names)
	var copies [][]naiveEndpoint // each element: every copy of one address:port, in order
	for _, name := range names {
		sl := m.slices[model.SliceKey{Namespace: svc.Namespace, Name: name}]
		target := uint16(0)
		for _, p := range sl.Ports {
			if p.Name == port.Name && p.Protocol == port.Protocol && target == 0 {
				target = p.Port
			}
		}
		if target == 0 {
			continue // the slice does not serve this port
		}
		for _, e := range sl.Endpoints {
			if !e.Address.IsValid() || naiveFamily(e.Address) != fam {
				continue
			}
			ne := naiveEndpoint{e, target}
			found := false
			for i := range copies {
				if copies[i][0].Address == e.Address && copies[i][0].port == target {
					copies[i] = append(copies[i], ne)
					found = true
					break
				}
			}
			if !found {
				copies = append(copies, []naiveEndpoint{ne})
			}
		}
	}
	var out []naiveEndpoint
	for _, cs := range copies {
		pick := cs[0]
		for _, c := range cs {
			if !c.Terminating {
				pick = c
				break
			}
		}
		out = append(out, pick)
	}
	return out
}

// naiveMember is an endpoint chosen for a set; fallback marks a serving-terminating one used
// because nothing ready fits.
type naiveMember struct {
	naiveEndpoint
	fallback bool
}

// naiveClusterSet reads "The cluster set": topology mode from ready endpoints, then the fallback.
func naiveClusterSet(eps []naiveEndpoint, node, zone string) []naiveMember {
	var ready []naiveEndpoint
	for _, e := range eps {
		if e.Ready {
			ready = append(ready, e)
		}
	}
	mode := "none"
	if len(ready) > 0 {
		allNodeHints, someForNode := true, false
		allZoneHints, someForZone := true, false
		for _, e := range ready {
			allNodeHints = allNodeHints && len(e.ForNodes) > 0
			someForNode = someForNode || slices.Contains(e.ForNodes, node)
			allZoneHints = allZoneHints && len(e.ForZones) > 0
			// An empty zone never matches.
			someForZone = someForZone || (zone != "" && slices.Contains(e.ForZones, zone))
		}
		if allNodeHints && someForNode {
			mode = "PreferSameNode"
		} else if allZoneHints && someForZone {
			mode = "PreferSameZone"
		}
	}
	var set []naiveMember
	for _, e := range ready {
		if mode == "none" ||
			(mode == "PreferSameNode" && slices.Contains(e.ForNodes, node)) ||
			(mode == "PreferSameZone" && slices.Contains(e.ForZones, zone)) {
			set = append(set, naiveMember{e, false})
		}
	}
	if len(set) == 0 {
		for _, e := range eps {
			if e.Serving && e.Terminating {
				set = append(set, naiveMember{e, true})
			}
		}
	}
	return set
}

// naiveLocalSet reads "The local set": hints never apply.
func naiveLocalSet(eps []naiveEndpoint, node string) []naiveMember {
	var set []naiveMember
	for _, e := range eps {
		if e.NodeName == node && e.Ready {
			set = append(set, naiveMember{e, false})
		}
	}
	if len(set) == 0 {
		for _, e := range eps {
			if e.NodeName == node && e.Serving && e.Terminating {
				set = append(set, naiveMember{e, true})
			}
		}
	}
	return set
}

func naiveDistinctReady(set []naiveMember) int {
	seen := map[netip.Addr]bool{}
	for _, e := range set {
		if e.Ready {
			seen[e.Address] = true
		}
	}
	return len(seen)
}

// naiveSet renders a set as portFacts does: the action, then its backends.
func naiveSet(set []naiveMember, empty string, localReady int) string {
	if len(set) == 0 {
		return renderSet(empty, nil, 0)
	}
	var backends []string
	for _, e := range set {
		backends = append(backends, renderBackend(netip.AddrPortFrom(e.Address, e.port), max(e.Weight, 1), e.fallback))
	}
	return renderSet("FORWARD", backends, localReady)
}

// expectHealthCheck reads "healthCheckNodePort": served on every node for ETP Local LoadBalancer
// services, healthy (200) when this node has a local READY endpoint. The exact count is the
// agent's to aggregate over ports; compute owes it the yes or no.
func (m *naiveModel) expectHealthCheck(svc *model.Service, node string) (string, bool) {
	if svc.HealthCheckNodePort == 0 || svc.Type != model.TypeLoadBalancer || !svc.ExternalTrafficLocal {
		return "", false
	}
	ready := false
	for _, port := range svc.Ports {
		for _, vip := range svc.ClusterIPs {
			for _, e := range m.endpointsOf(svc, port, naiveFamily(vip)) {
				ready = ready || (e.NodeName == node && e.Ready)
			}
		}
	}
	return fmt.Sprintf("port=%d local_ready=%v", svc.HealthCheckNodePort, ready), true
}
