package baremetal

import (
	"fmt"
	"strings"
)

// Headless and ExternalName services are named but not proxied: they hold no VIP, no port and
// no node port, and reach the model only for a node-local DNS to answer with (compute leaves them
// out of the dataplane).

// validateNamed checks what is particular to headless and ExternalName services, and that no
// other service uses their fields. named is true for such a service: the checks of proxied
// services then do not apply to it.
func validateNamed(o *Object, set Settings) (named bool, err error) {
	sp := &o.Service.Spec
	switch {
	case sp.ExternalName != "" && sp.Type != "ExternalName":
		return false, o.fail("spec.externalName", "only ExternalName services have one (type is %q)", or(sp.Type, "ClusterIP"))
	case sp.Headless && sp.Type != "" && sp.Type != "ClusterIP":
		return false, o.fail("spec.headless", "only ClusterIP services can be headless (type is %q)", sp.Type)
	case sp.PublishNotReadyAddresses && !sp.Headless:
		return false, o.fail("spec.publishNotReadyAddresses", "only headless services name their backends in DNS")
	case sp.Proxied():
		return false, nil
	}
	kind := "a headless service"
	if sp.Type == "ExternalName" {
		kind = "an ExternalName service"
		// A trailing dot is how a DNS name says it is fully qualified.
		if err := checkName(o, "spec.externalName", strings.TrimSuffix(sp.ExternalName, "."), dnsSubdomain); err != nil {
			return true, err
		}
		if len(sp.Backends) > 0 {
			return true, o.fail("spec.backends", "%s has none: DNS answers with a CNAME to spec.externalName", kind)
		}
	}
	for _, f := range proxyFields(sp) {
		if f.set {
			return true, o.fail(f.field, "%s is not proxied, so it has none", kind)
		}
	}
	for i, b := range sp.Backends {
		if b.Hostname != "" {
			if err := checkName(o, fmt.Sprintf("spec.backends[%d].hostname", i), b.Hostname, dnsLabel); err != nil {
				return true, err
			}
		}
	}
	// Ports are optional here: without them a headless service still answers A/AAAA.
	if len(sp.Ports) > 0 {
		if err := validatePorts(o, set); err != nil {
			return true, err
		}
	}
	return true, validateBackends(o, set)
}

// proxyFields are the fields only a proxied service may set.
func proxyFields(sp *ServiceSpec) []struct {
	field string
	set   bool
} {
	return []struct {
		field string
		set   bool
	}{
		{"spec.vips", len(sp.VIPs) > 0},
		{"spec.externalIPs", len(sp.ExternalIPs) > 0},
		{"spec.loadBalancerIPs", len(sp.LoadBalancerIPs) > 0},
		{"spec.loadBalancerSourceRanges", len(sp.LoadBalancerSourceRanges) > 0},
		{"spec.scheduler", sp.Scheduler != ""},
		{"spec.sessionAffinity", sp.SessionAffinity != nil},
		{"spec.externalTrafficPolicy", sp.ExternalTrafficPolicy != ""},
		{"spec.internalTrafficPolicy", sp.InternalTrafficPolicy != ""},
		{"spec.healthCheckNodePort", sp.HealthCheckNodePort != 0},
		// Probe sets are computed for proxied services only: a check here would never run.
		{"spec.healthCheck", sp.HealthCheck != nil},
	}
}
