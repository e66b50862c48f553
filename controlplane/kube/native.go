package kube

import (
	"slices"

	corev1 "k8s.io/api/core/v1"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/native"
)

// NativeService expresses a v1 Service in the native form, for bare metal to validate it and
// allocate what it leaves out with the rules of its own documents; bare metal stores the Service
// itself (see WriteAllocations) and the brain reads it with Service, as in Kubernetes mode.
// Selectors are ignored: endpoints come from EndpointSlices applied alongside.
func NativeService(s *corev1.Service) *native.Service {
	out := &native.Service{
		APIVersion: native.APIVersion, Kind: native.KindService,
		Metadata: native.Metadata{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels},
		Spec: native.ServiceSpec{
			Type:                     string(s.Spec.Type),
			VIPs:                     s.Spec.ClusterIPs,
			ExternalIPs:              s.Spec.ExternalIPs,
			LoadBalancerSourceRanges: s.Spec.LoadBalancerSourceRanges,
			ExternalTrafficPolicy:    string(s.Spec.ExternalTrafficPolicy),
			HealthCheckNodePort:      s.Spec.HealthCheckNodePort,
			Scheduler:                s.Annotations[AnnotationScheduler],
		},
	}
	if s.Spec.Type == corev1.ServiceTypeLoadBalancer {
		out.Spec.AllocateLoadBalancerNodePorts = s.Spec.AllocateLoadBalancerNodePorts
	}
	if len(out.Spec.VIPs) == 0 && s.Spec.ClusterIP != "" {
		out.Spec.VIPs = []string{s.Spec.ClusterIP}
	}
	if s.Spec.InternalTrafficPolicy != nil {
		out.Spec.InternalTrafficPolicy = string(*s.Spec.InternalTrafficPolicy)
	}
	if ip := s.Spec.LoadBalancerIP; ip != "" { //nolint:staticcheck // still how many users ask for a LB IP
		out.Spec.LoadBalancerIPs = append(out.Spec.LoadBalancerIPs, ip)
	}
	for _, ing := range s.Status.LoadBalancer.Ingress {
		if ing.IP != "" && (ing.IPMode == nil || *ing.IPMode == corev1.LoadBalancerIPModeVIP) {
			out.Spec.LoadBalancerIPs = append(out.Spec.LoadBalancerIPs, ing.IP)
		}
	}
	if s.Spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		out.Spec.SessionAffinity = &native.SessionAffinity{}
		if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			out.Spec.SessionAffinity.TimeoutSeconds = *c.ClientIP.TimeoutSeconds
		}
	}
	for _, p := range s.Spec.Ports {
		np := native.Port{Name: p.Name, Protocol: string(p.Protocol), Port: p.Port, NodePort: p.NodePort}
		if p.TargetPort.IntVal != 0 {
			np.TargetPort = p.TargetPort.IntVal
		}
		out.Spec.Ports = append(out.Spec.Ports, np)
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName || s.Spec.ClusterIP == corev1.ClusterIPNone {
		nameOnly(&out.Spec, s)
	}
	return out
}

// nameOnly keeps of a headless or ExternalName Service what DNS answers with. The API server
// fills in traffic policies and session affinity on every Service, so manifests copied from a
// cluster carry them; unproxied they mean nothing, and are dropped rather than refused.
func nameOnly(sp *native.ServiceSpec, s *corev1.Service) {
	sp.VIPs, sp.ExternalTrafficPolicy, sp.InternalTrafficPolicy, sp.SessionAffinity = nil, "", "", nil
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		sp.ExternalName = s.Spec.ExternalName
		return
	}
	sp.Headless = true
	sp.PublishNotReadyAddresses = s.Spec.PublishNotReadyAddresses
}

// NativeNode expresses a v1 Node in the native form.
func NativeNode(n *corev1.Node) *native.Node {
	out := &native.Node{APIVersion: native.APIVersion, Kind: native.KindNode, Metadata: native.Metadata{Name: n.Name, Labels: n.Labels},
		Spec: native.NodeSpec{Zone: n.Labels[model.ZoneLabel]}}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			out.Spec.Addresses = append(out.Spec.Addresses, a.Address)
		}
	}
	return out
}

// WriteAllocations writes into s what bare metal allocated in its native form from, as the API
// server and a load-balancer controller would have: the cluster IPs, node ports and health-check
// node port it left out, and its requested load-balancer addresses as status ingress, which is
// where Service reads them (kube-proxy ignores spec.loadBalancerIP).
func WriteAllocations(s *corev1.Service, from *native.Service) {
	sp := &from.Spec
	if s.Spec.ClusterIP == "" && len(sp.VIPs) > 0 {
		s.Spec.ClusterIP, s.Spec.ClusterIPs = sp.VIPs[0], slices.Clone(sp.VIPs)
	}
	for i := range s.Spec.Ports {
		if i < len(sp.Ports) && s.Spec.Ports[i].NodePort == 0 {
			s.Spec.Ports[i].NodePort = sp.Ports[i].NodePort
		}
	}
	if s.Spec.HealthCheckNodePort == 0 {
		s.Spec.HealthCheckNodePort = sp.HealthCheckNodePort
	}
	if s.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return
	}
	have := map[string]bool{}
	for _, ing := range s.Status.LoadBalancer.Ingress {
		have[ing.IP] = true
	}
	for _, ip := range sp.LoadBalancerIPs {
		if !have[ip] {
			s.Status.LoadBalancer.Ingress = append(s.Status.LoadBalancer.Ingress, corev1.LoadBalancerIngress{IP: ip})
			have[ip] = true
		}
	}
}
