package compute

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// portOutput is what one service port in one family contributes to every node's state.
type portOutput struct {
	base    string
	service *Resource
	cluster *layers // nil when the port does not use the cluster set
	local   *layers // nil when the port does not use the local set
}

// layers is a resource as each node sees it (see layeredSets).
type layers struct {
	def    *Resource
	byZone map[string]*Resource
	byNode map[string]*Resource
}

// portPolicy is the per-port, per-family reading of the traffic policies (semantics.md, "Inputs").
type portPolicy struct {
	itpLocal, etpLocal, external bool
}

func (p portPolicy) usesCluster() bool { return !p.itpLocal || p.external }
func (p portPolicy) usesLocal() bool   { return p.itpLocal || (p.etpLocal && p.external) }

// buildService computes a proxied service's resources, by name. slicesOfSvc must be sorted by name.
func buildService(svc *model.Service, slicesOfSvc []*model.EndpointSlice) map[string]*layers {
	out := map[string]*layers{}
	for _, port := range svc.Ports {
		for _, clusterIP := range svc.ClusterIPs {
			o := buildPort(svc, port, clusterIP, slicesOfSvc)
			out[o.service.Name] = &layers{def: o.service}
			if o.cluster != nil {
				out[o.cluster.def.Name] = o.cluster
			}
			if o.local != nil {
				out[o.local.def.Name] = o.local
			}
		}
	}
	if p := probeLayers(svc, slicesOfSvc); p != nil {
		out[resname.Join(svc.Namespace+"/"+svc.Name, resname.KindProbes)] = p
	}
	return out
}

// PortBase is the common prefix of a service port's resource names in one family.
func PortBase(key model.ServiceKey, portName string, fam model.Family) string {
	s := key.Namespace + "/" + key.Name
	if portName != "" {
		s += ":" + portName
	}
	return s + "/" + fam.String()
}

func buildPort(svc *model.Service, port model.ServicePort, clusterIP netip.Addr, slicesOfSvc []*model.EndpointSlice) *portOutput {
	fam := model.FamilyOf(clusterIP)
	base := PortBase(svc.Key(), port.Name, fam)
	frontends := frontendsFor(svc, port, clusterIP)
	pol := portPolicy{
		itpLocal: svc.InternalTrafficLocal,
		etpLocal: svc.ExternalTrafficLocal &&
			(svc.Type == model.TypeNodePort || svc.Type == model.TypeLoadBalancer || len(svc.ExternalIPs) > 0),
		external: slices.ContainsFunc(frontends, func(f *v1.Frontend) bool { return f.Kind != v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP }),
	}
	sp := &v1.ServicePort{
		Namespace: svc.Namespace,
		Name:      svc.Name,
		PortName:  port.Name,
		Family:    protoFamily(fam),
		Protocol:  protoProtocol(port.Protocol),
		Frontends: frontends,
		Scheduler: svc.Scheduler,
		Internal:  &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER},
	}
	if pol.itpLocal {
		sp.Internal.Scope = v1.EndpointScope_ENDPOINT_SCOPE_LOCAL
	}
	if pol.external {
		sp.External = &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER, Masquerade: true}
		if pol.etpLocal {
			sp.External = &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_LOCAL}
		}
	}
	if svc.AffinityTimeoutSeconds > 0 {
		sp.SessionAffinity = &v1.SessionAffinity{TimeoutSeconds: svc.AffinityTimeoutSeconds}
	}
	// semantics.md serves the healthCheckNodePort for every ETP Local load balancer, from this
	// node's local set: a port with no external destination (no node port, and its ingress not yet
	// assigned, of the other family or in Proxy mode) needs that set too, or no node would answer.
	healthChecked := svc.HealthCheckNodePort != 0 && svc.Type == model.TypeLoadBalancer && svc.ExternalTrafficLocal
	if pol.usesLocal() || healthChecked {
		sp.HealthCheckNodePort = uint32(svc.HealthCheckNodePort)
	}

	out := &portOutput{base: base, service: newResource(resname.Join(base, resname.KindService), &v1.Resource{Content: &v1.Resource_Service{Service: sp}})}
	ts := targetsFor(slicesOfSvc, port, fam)
	// An empty set refuses connections when the service has nothing usable anywhere, and silently
	// drops them when the endpoints exist but this traffic may not use them.
	empty := v1.TrafficAction_TRAFFIC_ACTION_DROP
	if !hasAny(ts) {
		empty = v1.TrafficAction_TRAFFIC_ACTION_REJECT
	}
	if pol.usesCluster() {
		out.cluster = sealLayers(resname.Join(base, resname.KindCluster), clusterLayers(ts), empty, false)
	}
	if pol.usesLocal() || healthChecked {
		out.local = sealLayers(resname.Join(base, resname.KindLocal), localLayers(ts), empty, true)
	}
	return out
}

func sealLayers(name string, l layeredSets, empty v1.TrafficAction, local bool) *layers {
	seal := func(ts []target) *Resource {
		return newResource(name, &v1.Resource{Content: &v1.Resource_Endpoints{Endpoints: endpointSet(ts, empty, local)}})
	}
	out := &layers{def: seal(l.def)}
	if len(l.byZone) > 0 {
		out.byZone = make(map[string]*Resource, len(l.byZone))
		for z, ts := range l.byZone {
			out.byZone[z] = seal(ts)
		}
	}
	if len(l.byNode) > 0 {
		out.byNode = make(map[string]*Resource, len(l.byNode))
		for n, ts := range l.byNode {
			out.byNode[n] = seal(ts)
		}
	}
	return out
}

func endpointSet(ts []target, empty v1.TrafficAction, local bool) *v1.EndpointSet {
	set := &v1.EndpointSet{Action: empty}
	if len(ts) == 0 {
		return set
	}
	set.Action = v1.TrafficAction_TRAFFIC_ACTION_FORWARD
	set.Backends = make([]*v1.Backend, len(ts))
	readyIPs := map[netip.Addr]struct{}{}
	for i, t := range ts {
		set.Backends[i] = &v1.Backend{
			Address:     t.Address.String(),
			Port:        uint32(t.Port),
			Weight:      max(t.Weight, 1),
			Terminating: !t.Ready,
		}
		if t.Ready {
			readyIPs[t.Address] = struct{}{}
		}
	}
	if local {
		set.LocalReadyEndpoints = uint32(len(readyIPs))
	}
	return set
}

// frontendsFor lists the port's frontends in the family of clusterIP, sorted by kind, address, port.
func frontendsFor(svc *model.Service, port model.ServicePort, clusterIP netip.Addr) []*v1.Frontend {
	fam := model.FamilyOf(clusterIP)
	out := []*v1.Frontend{{Kind: v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP, Address: clusterIP.String(), Port: uint32(port.Port)}}
	if port.NodePort != 0 {
		out = append(out, &v1.Frontend{Kind: v1.FrontendKind_FRONTEND_KIND_NODE_PORT, Port: uint32(port.NodePort)})
	}
	if svc.Type == model.TypeLoadBalancer {
		var ranges []string
		for _, r := range svc.LoadBalancerSourceRanges {
			if model.FamilyOf(r.Addr()) == fam {
				ranges = append(ranges, r.Masked().String())
			}
		}
		for _, ing := range svc.LoadBalancerIngress {
			// A Proxy-mode load balancer delivers to the node itself, not to the VIP.
			if ing.IP.IsValid() && model.FamilyOf(ing.IP) == fam && ing.IPMode != model.IPModeProxy {
				out = append(out, &v1.Frontend{Kind: v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, Address: ing.IP.String(), Port: uint32(port.Port), SourceRanges: ranges})
			}
		}
	}
	for _, ip := range svc.ExternalIPs {
		if model.FamilyOf(ip) == fam {
			out = append(out, &v1.Frontend{Kind: v1.FrontendKind_FRONTEND_KIND_EXTERNAL_IP, Address: ip.String(), Port: uint32(port.Port)})
		}
	}
	slices.SortFunc(out, func(a, b *v1.Frontend) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port))
	})
	return slices.CompactFunc(out, func(a, b *v1.Frontend) bool {
		return a.Kind == b.Kind && a.Address == b.Address && a.Port == b.Port
	})
}

func protoFamily(f model.Family) v1.IPFamily {
	if f == model.IPv6 {
		return v1.IPFamily_IP_FAMILY_IPV6
	}
	return v1.IPFamily_IP_FAMILY_IPV4
}

func protoProtocol(p model.Protocol) v1.Protocol {
	switch p {
	case model.UDP:
		return v1.Protocol_PROTOCOL_UDP
	case model.SCTP:
		return v1.Protocol_PROTOCOL_SCTP
	default:
		return v1.Protocol_PROTOCOL_TCP
	}
}
