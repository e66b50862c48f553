package baremetal

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// fromKubeService stores a v1 Service in the native form. Selectors are ignored: endpoints come
// from EndpointSlices applied alongside.
func fromKubeService(_ string, s *corev1.Service) (*Service, error) {
	out := &Service{
		APIVersion: APIVersion, Kind: KindService,
		Metadata: Metadata{Name: s.Name, Namespace: s.Namespace, Labels: s.Labels},
		Spec: ServiceSpec{
			Type:                     string(s.Spec.Type),
			VIPs:                     s.Spec.ClusterIPs,
			ExternalIPs:              s.Spec.ExternalIPs,
			LoadBalancerSourceRanges: s.Spec.LoadBalancerSourceRanges,
			ExternalTrafficPolicy:    string(s.Spec.ExternalTrafficPolicy),
			HealthCheckNodePort:      s.Spec.HealthCheckNodePort,
		},
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
		out.Spec.SessionAffinity = &SessionAffinity{}
		if c := s.Spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			out.Spec.SessionAffinity.TimeoutSeconds = *c.ClientIP.TimeoutSeconds
		}
	}
	for _, p := range s.Spec.Ports {
		np := Port{Name: p.Name, Protocol: string(p.Protocol), Port: p.Port, NodePort: p.NodePort}
		if p.TargetPort.IntVal != 0 {
			np.TargetPort = p.TargetPort.IntVal
		}
		out.Spec.Ports = append(out.Spec.Ports, np)
	}
	if s.Spec.Type == corev1.ServiceTypeExternalName || s.Spec.ClusterIP == corev1.ClusterIPNone {
		nameOnly(&out.Spec, s)
	}
	return out, nil
}

// nameOnly keeps of a headless or ExternalName Service what DNS answers with. The API server
// fills in traffic policies and session affinity on every Service, so manifests copied from a
// cluster carry them; unproxied they mean nothing, and are dropped rather than refused.
func nameOnly(sp *ServiceSpec, s *corev1.Service) {
	sp.VIPs, sp.ExternalTrafficPolicy, sp.InternalTrafficPolicy, sp.SessionAffinity = nil, "", "", nil
	if s.Spec.Type == corev1.ServiceTypeExternalName {
		sp.ExternalName = s.Spec.ExternalName
		return
	}
	sp.Headless = true
	sp.PublishNotReadyAddresses = s.Spec.PublishNotReadyAddresses
}

// fromKubeNode stores a v1 Node in the native form.
func fromKubeNode(n *corev1.Node) *Node {
	out := &Node{APIVersion: APIVersion, Kind: KindNode, Metadata: Metadata{Name: n.Name, Labels: n.Labels},
		Spec: NodeSpec{Zone: n.Labels[model.ZoneLabel]}}
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP {
			out.Spec.Addresses = append(out.Spec.Addresses, a.Address)
		}
	}
	return out
}
