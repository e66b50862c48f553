package compute

import "github.com/ganglion-proxy/ganglion/controlplane/model"

// Labels with which Kubernetes marks services that kube-proxy must leave alone.
const (
	LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	LabelHeadless         = "service.kubernetes.io/headless"
)

// Options tune compute.
type Options struct {
	// ProxyName, when set, claims services labelled service-proxy-name=ProxyName. Services labelled
	// with any other name belong to another proxy. Empty behaves like kube-proxy: any value of the
	// label means another proxy.
	ProxyName string
	// Announce says which outside addresses nodes announce (see announce.go).
	Announce AnnounceOptions
}

// IgnoredReason says why a service is not proxied, or "" when it is.
func IgnoredReason(svc *model.Service, opts Options) string {
	switch {
	case svc.Type == model.TypeExternalName:
		return "type ExternalName"
	case svc.Headless || len(svc.ClusterIPs) == 0:
		return "headless (no cluster IP)"
	}
	if _, ok := svc.Labels[LabelHeadless]; ok {
		return "labelled " + LabelHeadless
	}
	if name, ok := svc.Labels[LabelServiceProxyName]; ok && (opts.ProxyName == "" || name != opts.ProxyName) {
		return "labelled for proxy " + `"` + name + `"`
	}
	return ""
}

// UnproxiedAddresses explains the addresses of a proxied service that no node programs: load-
// balancer ingress in ipMode Proxy, whose load balancer sends traffic to the nodes itself.
func UnproxiedAddresses(svc *model.Service) []string {
	var out []string
	for _, ing := range svc.LoadBalancerIngress {
		if ing.IPMode == model.IPModeProxy {
			out = append(out, ing.IP.String()+": load-balancer ingress with ipMode Proxy: the load balancer proxies to the nodes, which do not program it")
		}
	}
	return out
}
