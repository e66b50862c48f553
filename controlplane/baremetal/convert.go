package baremetal

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/ganglion-proxy/ganglion/controlplane/kube"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// modelOf converts a stored service: a Kubernetes Service through package kube, as in Kubernetes
// mode, a native one here.
func modelOf(o *Object) (*model.Service, error) {
	if o.KubeService != nil {
		return kube.Service(o.KubeService)
	}
	return modelService(o.Service), nil
}

// modelService converts a stored native service. Stored objects were validated, so parse errors only
// skip the bad value.
func modelService(s *Service) *model.Service {
	sp := &s.Spec
	out := &model.Service{
		Namespace:            s.Metadata.Namespace,
		Name:                 s.Metadata.Name,
		Type:                 model.ServiceType(or(sp.Type, string(model.TypeClusterIP))),
		ClusterIPs:           addrs(sp.VIPs),
		ExternalIPs:          addrs(sp.ExternalIPs),
		ExternalTrafficLocal: sp.ExternalTrafficPolicy == "Local",
		InternalTrafficLocal: sp.InternalTrafficPolicy == "Local",
		HealthCheckNodePort:  uint16(sp.HealthCheckNodePort),
		Scheduler:            sp.Scheduler,
		Labels:               s.Metadata.Labels,
		// Named, not proxied: compute gives these DNS records only.
		Headless:                 sp.Headless,
		ExternalName:             sp.ExternalName,
		PublishNotReadyAddresses: sp.PublishNotReadyAddresses,
	}
	for _, ip := range addrs(sp.LoadBalancerIPs) {
		out.LoadBalancerIngress = append(out.LoadBalancerIngress, model.LoadBalancerIngress{IP: ip, IPMode: model.IPModeVIP})
	}
	for _, r := range sp.LoadBalancerSourceRanges {
		if p, err := netip.ParsePrefix(r); err == nil {
			out.LoadBalancerSourceRanges = append(out.LoadBalancerSourceRanges, p)
		}
	}
	if a := sp.SessionAffinity; a != nil {
		out.AffinityTimeoutSeconds = model.DefaultAffinityTimeoutSeconds
		if a.TimeoutSeconds > 0 {
			out.AffinityTimeoutSeconds = uint32(a.TimeoutSeconds)
		}
	}
	if hc := sp.HealthCheck; hc != nil {
		out.HealthCheck = modelHealthCheck(hc)
	}
	for _, p := range sp.Ports {
		out.Ports = append(out.Ports, model.ServicePort{Name: p.Name, Protocol: model.Protocol(or(p.Protocol, "TCP")), Port: uint16(p.Port), NodePort: uint16(p.NodePort)})
	}
	return out
}

func modelHealthCheck(hc *HealthCheck) *model.HealthCheck {
	out := &model.HealthCheck{
		InitialDelaySeconds: uint32(hc.InitialDelaySeconds), PeriodSeconds: uint32(hc.PeriodSeconds),
		TimeoutSeconds: uint32(hc.TimeoutSeconds), SuccessThreshold: uint32(hc.SuccessThreshold), FailureThreshold: uint32(hc.FailureThreshold),
	}
	switch {
	case hc.HTTPGet != nil:
		out.Action, out.Path, out.Port, out.Scheme = model.ProbeHTTPGet, hc.HTTPGet.Path, uint16(hc.HTTPGet.Port), hc.HTTPGet.Scheme
	case hc.TCPSocket != nil:
		out.Action, out.Port = model.ProbeTCPSocket, uint16(hc.TCPSocket.Port)
	case hc.Exec != nil:
		out.Action, out.Command = model.ProbeExec, hc.Exec.Command
	}
	return out
}

// probed is a backend as its node's agent probes it.
type probed struct {
	addr netip.Addr
	node string
}

// backendSlices turns a native service's backends into one slice per family and port override.
// failing holds the backends whose health check fails on their own node; a disabled or failing
// backend is kept but not ready, so it shows in explanations.
func backendSlices(s *Service, failing map[probed]string) []*model.EndpointSlice {
	type group struct {
		fam  model.Family
		port int32
	}
	slices := map[group]*model.EndpointSlice{}
	var order []group
	for _, b := range s.Spec.Backends {
		ip, err := netip.ParseAddr(b.Address)
		if err != nil {
			continue
		}
		ip = ip.Unmap()
		g := group{model.FamilyOf(ip), b.Port}
		sl := slices[g]
		if sl == nil {
			sl = &model.EndpointSlice{Namespace: s.Metadata.Namespace, Name: backendSliceName(s.Metadata.Name, g.fam, g.port),
				Service: s.Metadata.Name, Family: g.fam}
			for _, p := range s.Spec.Ports {
				target := p.TargetPort
				if target == 0 {
					target = p.Port
				}
				if b.Port != 0 {
					target = b.Port
				}
				sl.Ports = append(sl.Ports, model.EndpointPort{Name: p.Name, Protocol: model.Protocol(or(p.Protocol, "TCP")), Port: uint16(target)})
			}
			slices[g] = sl
			order = append(order, g)
		}
		why, fails := failing[probed{addr: ip, node: b.Node}]
		if fails && s.Spec.HealthCheck != nil {
			why = checkString(s.Spec.HealthCheck) + " " + why
		}
		if b.Disabled {
			why = "disabled"
		}
		ready := why == ""
		sl.Endpoints = append(sl.Endpoints, model.Endpoint{
			Address: ip, Ready: ready, Serving: ready, NodeName: b.Node, Zone: b.Zone, Weight: uint32(max(b.Weight, 0)),
			Hostname: b.Hostname, NotReadyReason: why,
		})
	}
	out := make([]*model.EndpointSlice, 0, len(order))
	for _, g := range order {
		out = append(out, slices[g])
	}
	return out
}

// backendSliceName names the slice that carries a native service's backends; the ":" keeps it
// apart from any slice applied as a manifest, whose names are DNS names.
func backendSliceName(svc string, fam model.Family, port int32) string {
	return fmt.Sprintf("%s:backends-%s-%d", svc, fam, port)
}

func modelNode(n *Node) *model.Node {
	return &model.Node{Name: n.Metadata.Name, Zone: n.Spec.Zone, Addresses: addrs(n.Spec.Addresses), Labels: n.Metadata.Labels, Ready: true}
}

func addrs(in []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range in {
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, a.Unmap())
		}
	}
	return out
}

// modelSlice converts a stored EndpointSlice; nil when the proxy does not use it.
var modelSlice = kube.EndpointSlice

// checkString names a health check as describe shows it: its kind and target.
func checkString(hc *HealthCheck) string {
	port := func(p int32) string {
		if p == 0 {
			return "" // the endpoint's own port
		}
		return fmt.Sprintf(":%d", p)
	}
	switch {
	case hc.HTTPGet != nil:
		return fmt.Sprintf("httpGet %s %s%s", strings.ToUpper(or(hc.HTTPGet.Scheme, "HTTP")), port(hc.HTTPGet.Port), or(hc.HTTPGet.Path, "/"))
	case hc.TCPSocket != nil:
		return "tcpSocket" + port(hc.TCPSocket.Port)
	case hc.Exec != nil && len(hc.Exec.Command) > 0:
		return "exec " + hc.Exec.Command[0]
	}
	return "health check"
}
