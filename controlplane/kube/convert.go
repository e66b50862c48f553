// Package kube converts Kubernetes objects (core/v1 Service and Node, discovery/v1 EndpointSlice)
// into the brain's model, applying the API's defaults the way kube-proxy reads them.
package kube

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// Annotations and labels the adapter reads.
const (
	// AnnotationScheduler picks the IPVS scheduler of a service (rr when absent).
	AnnotationScheduler = "ganglion-proxy.io/scheduler"
	// AnnotationTriggerTime is set by the EndpointSlice controller to when the change began.
	AnnotationTriggerTime = "endpoints.kubernetes.io/last-change-trigger-time"
)

// ErrInvalid marks objects that cannot be converted; the message names the field.
var ErrInvalid = errors.New("invalid")

func invalid(obj, field, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %s: %w", obj, field, fmt.Sprintf(format, args...), ErrInvalid)
}

// Service converts a core/v1 Service.
func Service(s *corev1.Service) (*model.Service, error) {
	id := "Service " + s.Namespace + "/" + s.Name
	out := &model.Service{
		Namespace:            s.Namespace,
		Name:                 s.Name,
		Type:                 model.ServiceType(s.Spec.Type),
		Headless:             s.Spec.ClusterIP == corev1.ClusterIPNone,
		ExternalTrafficLocal: s.Spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal,
		InternalTrafficLocal: s.Spec.InternalTrafficPolicy != nil && *s.Spec.InternalTrafficPolicy == corev1.ServiceInternalTrafficPolicyLocal,
		HealthCheckNodePort:  uint16(s.Spec.HealthCheckNodePort),
		Scheduler:            s.Annotations[AnnotationScheduler],
		Labels:               s.Labels,
		// Kept though not proxied: a node-local DNS answers for headless and ExternalName services.
		ExternalName:             s.Spec.ExternalName,
		PublishNotReadyAddresses: s.Spec.PublishNotReadyAddresses,
	}
	if s.Spec.LoadBalancerClass != nil {
		out.LoadBalancerClass = *s.Spec.LoadBalancerClass
	}
	if out.Type == "" {
		out.Type = model.TypeClusterIP
	}
	clusterIPs := s.Spec.ClusterIPs
	if len(clusterIPs) == 0 && s.Spec.ClusterIP != "" {
		clusterIPs = []string{s.Spec.ClusterIP}
	}
	if !out.Headless {
		var err error
		if out.ClusterIPs, err = parseAddrs(id, "spec.clusterIPs", clusterIPs); err != nil {
			return nil, err
		}
	}
	var err error
	if out.ExternalIPs, err = parseAddrs(id, "spec.externalIPs", s.Spec.ExternalIPs); err != nil {
		return nil, err
	}
	for i, r := range s.Spec.LoadBalancerSourceRanges {
		p, err := netip.ParsePrefix(strings.TrimSpace(r))
		if err != nil {
			return nil, invalid(id, fmt.Sprintf("spec.loadBalancerSourceRanges[%d]", i), "%q is not a CIDR", r)
		}
		out.LoadBalancerSourceRanges = append(out.LoadBalancerSourceRanges, p)
	}
	if out.Type == model.TypeLoadBalancer {
		for i, ing := range s.Status.LoadBalancer.Ingress {
			if ing.IP == "" {
				continue // a hostname-only ingress has no address to program
			}
			ip, err := netip.ParseAddr(ing.IP)
			if err != nil {
				return nil, invalid(id, fmt.Sprintf("status.loadBalancer.ingress[%d].ip", i), "%q is not an IP address", ing.IP)
			}
			mode := model.IPModeVIP
			if ing.IPMode != nil {
				mode = model.IPMode(*ing.IPMode)
			}
			out.LoadBalancerIngress = append(out.LoadBalancerIngress, model.LoadBalancerIngress{IP: ip, IPMode: mode})
		}
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		out.AffinityTimeoutSeconds = model.DefaultAffinityTimeoutSeconds
		if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil && *c.ClientIP.TimeoutSeconds > 0 {
			out.AffinityTimeoutSeconds = uint32(*c.ClientIP.TimeoutSeconds)
		}
	}
	for i, p := range s.Spec.Ports {
		if p.Port <= 0 || p.Port > 65535 {
			return nil, invalid(id, fmt.Sprintf("spec.ports[%d].port", i), "%d is not a port number", p.Port)
		}
		out.Ports = append(out.Ports, model.ServicePort{
			Name:     p.Name,
			Protocol: protocol(p.Protocol),
			Port:     uint16(p.Port),
			NodePort: uint16(p.NodePort),
		})
	}
	return out, nil
}

func parseAddrs(id, field string, in []string) ([]netip.Addr, error) {
	var out []netip.Addr
	for i, s := range in {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, invalid(id, fmt.Sprintf("%s[%d]", field, i), "%q is not an IP address", s)
		}
		out = append(out, a.Unmap())
	}
	return out, nil
}

func protocol(p corev1.Protocol) model.Protocol {
	if p == "" {
		return model.TCP
	}
	return model.Protocol(p)
}

// EndpointSlice converts a discovery/v1 EndpointSlice. It returns nil, nil for slices the proxy
// does not use: FQDN slices and slices that name no service.
func EndpointSlice(s *discoveryv1.EndpointSlice) (*model.EndpointSlice, error) {
	svcName := s.Labels[discoveryv1.LabelServiceName]
	if svcName == "" {
		return nil, nil
	}
	var fam model.Family
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
		fam = model.IPv4
	case discoveryv1.AddressTypeIPv6:
		fam = model.IPv6
	default:
		return nil, nil
	}
	id := "EndpointSlice " + s.Namespace + "/" + s.Name
	out := &model.EndpointSlice{Namespace: s.Namespace, Name: s.Name, Service: svcName, Family: fam}
	if t, ok := s.Annotations[AnnotationTriggerTime]; ok {
		if tt, err := time.Parse(time.RFC3339Nano, t); err == nil {
			out.TriggerTime = tt
		}
	}
	for _, p := range s.Ports {
		if p.Port == nil || *p.Port <= 0 || *p.Port > 65535 {
			continue // a port without a number matches nothing
		}
		ep := model.EndpointPort{Port: uint16(*p.Port), Protocol: model.TCP}
		if p.Name != nil {
			ep.Name = *p.Name
		}
		if p.Protocol != nil {
			ep.Protocol = protocol(*p.Protocol)
		}
		out.Ports = append(out.Ports, ep)
	}
	for i, e := range s.Endpoints {
		if len(e.Addresses) == 0 {
			continue
		}
		// Like kube-proxy, only the first address is used: the others are the same pod's.
		addr, err := netip.ParseAddr(e.Addresses[0])
		if err != nil || model.FamilyOf(addr) != fam {
			return nil, invalid(id, fmt.Sprintf("endpoints[%d].addresses[0]", i), "%q is not an %s address", e.Addresses[0], s.AddressType)
		}
		me := model.Endpoint{
			Address:     addr.Unmap(),
			Ready:       e.Conditions.Ready == nil || *e.Conditions.Ready,
			Serving:     e.Conditions.Serving == nil || *e.Conditions.Serving,
			Terminating: e.Conditions.Terminating != nil && *e.Conditions.Terminating,
			Weight:      1,
		}
		if e.NodeName != nil {
			me.NodeName = *e.NodeName
		}
		if e.Hostname != nil {
			me.Hostname = *e.Hostname
		}
		if e.Zone != nil {
			me.Zone = *e.Zone
		}
		if e.Hints != nil {
			for _, z := range e.Hints.ForZones {
				me.ForZones = append(me.ForZones, z.Name)
			}
			for _, n := range e.Hints.ForNodes {
				me.ForNodes = append(me.ForNodes, n.Name)
			}
		}
		out.Endpoints = append(out.Endpoints, me)
	}
	return out, nil
}

// Node converts a core/v1 Node.
func Node(n *corev1.Node) *model.Node {
	out := &model.Node{Name: n.Name, Zone: n.Labels[model.ZoneLabel], Labels: n.Labels}
	for _, a := range n.Status.Addresses {
		if a.Type != corev1.NodeInternalIP && a.Type != corev1.NodeExternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			out.Addresses = append(out.Addresses, ip.Unmap())
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			out.Ready = c.Status == corev1.ConditionTrue
		}
	}
	// Kubernetes says nothing of the node's agent: a ready node is taken to have one.
	out.Live = out.Ready
	return out
}
