package baremetal

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/validation"
)

var (
	// Schedulers are the IPVS schedulers of the kernel.
	Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}
	protocols  = []string{"TCP", "UDP", "SCTP"}
)

// The API server's rules for names, from apimachinery, so that what Kubernetes refuses bare metal
// refuses too. Store keys are built from names that passed them: no "/", "..", NUL or upper case.
var (
	dnsLabel     = validation.IsDNS1123Label
	dnsSubdomain = validation.IsDNS1123Subdomain
)

// The API server's limits on one EndpointSlice.
const (
	maxSliceEndpoints = 1000
	maxSlicePorts     = 100
)

func checkName(o *Object, field, name string, rule func(string) []string) error {
	if name == "" {
		return o.fail(field, "required")
	}
	if errs := rule(name); len(errs) > 0 {
		return o.fail(field, "%q: %s", name, strings.Join(errs, "; "))
	}
	return nil
}

// checkLabels applies the API server's rules to label keys and values.
func checkLabels(o *Object, labels map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return o.fail("metadata.labels", "key %q: %s", k, strings.Join(errs, "; "))
		}
		if errs := validation.IsValidLabelValue(labels[k]); len(errs) > 0 {
			return o.fail("metadata.labels["+k+"]", "%q: %s", labels[k], strings.Join(errs, "; "))
		}
	}
	return nil
}

func checkPort(o *Object, field string, p int32, optional bool) error {
	if (p == 0 && optional) || (p >= 1 && p <= 65535) {
		return nil
	}
	return o.fail(field, "%d is not a port number (1-65535)", p)
}

func parseIP(o *Object, field, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, o.fail(field, "%q is not an IP address", s)
	}
	return a.Unmap(), nil
}

// validateService checks one service on its own; conflicts with others are checked later.
func validateService(o *Object, set Settings) error {
	s := o.Service
	if err := checkName(o, "metadata.name", s.Metadata.Name, dnsLabel); err != nil {
		return err
	}
	if err := checkName(o, "metadata.namespace", s.Metadata.Namespace, dnsLabel); err != nil {
		return err
	}
	if err := checkLabels(o, s.Metadata.Labels); err != nil {
		return err
	}
	sp := &s.Spec
	if !slices.Contains([]string{"", "ClusterIP", "NodePort", "LoadBalancer", "ExternalName"}, sp.Type) {
		return o.fail("spec.type", "%q is not ClusterIP, NodePort, LoadBalancer or ExternalName", sp.Type)
	}
	if named, err := validateNamed(o, set); named || err != nil {
		return err
	}
	families := map[bool]bool{}
	for i, v := range sp.VIPs {
		a, err := parseIP(o, fmt.Sprintf("spec.vips[%d]", i), v)
		if err != nil {
			return err
		}
		if families[a.Is4()] {
			return o.fail(fmt.Sprintf("spec.vips[%d]", i), "a second VIP of the same family (%s)", v)
		}
		families[a.Is4()] = true
	}
	for _, list := range []struct {
		field string
		ips   []string
	}{{"spec.externalIPs", sp.ExternalIPs}, {"spec.loadBalancerIPs", sp.LoadBalancerIPs}} {
		for i, v := range list.ips {
			if _, err := parseIP(o, fmt.Sprintf("%s[%d]", list.field, i), v); err != nil {
				return err
			}
		}
	}
	for _, f := range serviceAddresses(sp) {
		if err := checkAddress(o, f.field, f.ip, set); err != nil {
			return err
		}
	}
	if len(sp.LoadBalancerIPs) > 0 && sp.Type != "LoadBalancer" {
		return o.fail("spec.loadBalancerIPs", "only LoadBalancer services have load-balancer IPs (type is %q)", or(sp.Type, "ClusterIP"))
	}
	for i, r := range sp.LoadBalancerSourceRanges {
		if _, err := netip.ParsePrefix(r); err != nil {
			return o.fail(fmt.Sprintf("spec.loadBalancerSourceRanges[%d]", i), "%q is not a CIDR", r)
		}
	}
	if err := validatePorts(o, set); err != nil {
		return err
	}
	if sp.Scheduler != "" && !slices.Contains(Schedulers, sp.Scheduler) {
		return o.fail("spec.scheduler", "unknown scheduler %q (want one of %v)", sp.Scheduler, Schedulers)
	}
	if a := sp.SessionAffinity; a != nil && (a.TimeoutSeconds < 0 || a.TimeoutSeconds > 86400) {
		return o.fail("spec.sessionAffinity.timeoutSeconds", "%d is not between 1 and 86400", a.TimeoutSeconds)
	}
	for field, p := range map[string]string{"spec.externalTrafficPolicy": sp.ExternalTrafficPolicy, "spec.internalTrafficPolicy": sp.InternalTrafficPolicy} {
		if !slices.Contains([]string{"", "Cluster", "Local"}, p) {
			return o.fail(field, "%q is not Cluster or Local", p)
		}
	}
	if sp.HealthCheckNodePort != 0 && (sp.Type != "LoadBalancer" || sp.ExternalTrafficPolicy != "Local") {
		return o.fail("spec.healthCheckNodePort", "only LoadBalancer services with externalTrafficPolicy Local have one")
	}
	if p := sp.HealthCheckNodePort; p != 0 && (p < set.NodePortMin || p > set.NodePortMax) {
		return o.fail("spec.healthCheckNodePort", "%d is outside the node port range %d-%d", p, set.NodePortMin, set.NodePortMax)
	}
	if err := validateHealthCheck(o); err != nil {
		return err
	}
	return validateBackends(o, set)
}

func validatePorts(o *Object, set Settings) error {
	sp := &o.Service.Spec
	if len(sp.Ports) == 0 {
		return o.fail("spec.ports", "at least one port is required")
	}
	names := map[string]bool{}
	seen := map[string]bool{}
	for i, p := range sp.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		if len(sp.Ports) > 1 && p.Name == "" {
			return o.fail(f+".name", "required when a service has several ports")
		}
		if p.Name != "" {
			if err := checkName(o, f+".name", p.Name, dnsLabel); err != nil {
				return err
			}
			if names[p.Name] {
				return o.fail(f+".name", "%q is used twice", p.Name)
			}
			names[p.Name] = true
		}
		if p.Protocol != "" && !slices.Contains(protocols, p.Protocol) {
			return o.fail(f+".protocol", "%q is not TCP, UDP or SCTP", p.Protocol)
		}
		if err := checkPort(o, f+".port", p.Port, false); err != nil {
			return err
		}
		if err := checkPort(o, f+".targetPort", p.TargetPort, true); err != nil {
			return err
		}
		key := fmt.Sprintf("%d/%s", p.Port, or(p.Protocol, "TCP"))
		if seen[key] {
			return o.fail(f+".port", "%s is listed twice", key)
		}
		seen[key] = true
		if p.NodePort != 0 {
			if sp.Type != "NodePort" && sp.Type != "LoadBalancer" {
				return o.fail(f+".nodePort", "only NodePort and LoadBalancer services have node ports (type is %q)", or(sp.Type, "ClusterIP"))
			}
			if p.NodePort < set.NodePortMin || p.NodePort > set.NodePortMax {
				return o.fail(f+".nodePort", "%d is outside the node port range %d-%d", p.NodePort, set.NodePortMin, set.NodePortMax)
			}
		}
	}
	return nil
}

// validateBackends checks a native service's backends. A backend on a node's own address is
// fine (host-network workloads); one on a special address is not.
func validateBackends(o *Object, set Settings) error {
	sp := &o.Service.Spec
	seen := map[string]bool{}
	for i, b := range sp.Backends {
		f := fmt.Sprintf("spec.backends[%d]", i)
		a, err := parseIP(o, f+".address", b.Address)
		if err != nil {
			return err
		}
		if err := checkAddress(o, f+".address", a, set); err != nil {
			return err
		}
		if err := checkPort(o, f+".port", b.Port, true); err != nil {
			return err
		}
		if b.Port != 0 && len(sp.Ports) > 1 {
			return o.fail(f+".port", "a backend port override needs a single-port service; set ports[].targetPort instead")
		}
		if b.Weight < 0 || b.Weight > 65535 {
			return o.fail(f+".weight", "%d is not between 0 and 65535", b.Weight)
		}
		k := fmt.Sprintf("%s:%d", a, b.Port)
		if seen[k] {
			return o.fail(f+".address", "%s is listed twice", b.Address)
		}
		seen[k] = true
		if b.Node != "" {
			if err := checkName(o, f+".node", b.Node, dnsSubdomain); err != nil {
				return err
			}
		}
	}
	return nil
}

func validateNode(o *Object) error {
	n := o.Node
	if err := checkName(o, "metadata.name", n.Metadata.Name, dnsSubdomain); err != nil {
		return err
	}
	if err := checkLabels(o, n.Metadata.Labels); err != nil {
		return err
	}
	for i, a := range n.Spec.Addresses {
		if _, err := parseIP(o, fmt.Sprintf("spec.addresses[%d]", i), a); err != nil {
			return err
		}
	}
	return nil
}

func validateSlice(o *Object, set Settings) error {
	s := o.Slice
	if err := checkName(o, "metadata.name", s.Name, dnsSubdomain); err != nil {
		return err
	}
	if err := checkName(o, "metadata.namespace", s.Namespace, dnsLabel); err != nil {
		return err
	}
	// A slice that names no service is stored, as the API server stores it, and backs nothing
	// (kube-proxy skips it too).
	if svc, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		if err := checkName(o, "metadata.labels["+discoveryv1.LabelServiceName+"]", svc, dnsLabel); err != nil {
			return err
		}
	}
	if err := checkLabels(o, s.Labels); err != nil {
		return err
	}
	if len(s.Endpoints) > maxSliceEndpoints {
		return o.fail("endpoints", "%d endpoints; a slice holds at most %d (split them over several slices)", len(s.Endpoints), maxSliceEndpoints)
	}
	if len(s.Ports) > maxSlicePorts {
		return o.fail("ports", "%d ports; a slice holds at most %d", len(s.Ports), maxSlicePorts)
	}
	var want func(netip.Addr) bool
	switch s.AddressType {
	case discoveryv1.AddressTypeIPv4:
		want = netip.Addr.Is4
	case discoveryv1.AddressTypeIPv6:
		want = func(a netip.Addr) bool { return a.Is6() && !a.Is4In6() }
	case discoveryv1.AddressTypeFQDN:
		// Stored as the API server stores it; no proxy programs a name.
		return validateFQDNSlice(o)
	default:
		return o.fail("addressType", "%q is not IPv4, IPv6 or FQDN", s.AddressType)
	}
	for i, p := range s.Ports {
		if p.Port != nil {
			if err := checkPort(o, fmt.Sprintf("ports[%d].port", i), *p.Port, false); err != nil {
				return err
			}
		}
		if p.Protocol != nil && !slices.Contains(protocols, string(*p.Protocol)) {
			return o.fail(fmt.Sprintf("ports[%d].protocol", i), "%q is not TCP, UDP or SCTP", *p.Protocol)
		}
	}
	for i, e := range s.Endpoints {
		if len(e.Addresses) == 0 {
			return o.fail(fmt.Sprintf("endpoints[%d].addresses", i), "at least one address is required")
		}
		if e.Hostname != nil {
			// DNS builds <hostname>.<service>... from it.
			if err := checkName(o, fmt.Sprintf("endpoints[%d].hostname", i), *e.Hostname, dnsLabel); err != nil {
				return err
			}
		}
		for j, addr := range e.Addresses {
			a, err := parseIP(o, fmt.Sprintf("endpoints[%d].addresses[%d]", i, j), addr)
			if err != nil {
				return err
			}
			if !want(a) {
				return o.fail(fmt.Sprintf("endpoints[%d].addresses[%d]", i, j), "%s is not an %s address", addr, s.AddressType)
			}
			if err := checkAddress(o, fmt.Sprintf("endpoints[%d].addresses[%d]", i, j), a, set); err != nil {
				return err
			}
		}
	}
	return nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// validateFQDNSlice checks what the API server checks of an FQDN slice's endpoints.
func validateFQDNSlice(o *Object) error {
	for i, e := range o.Slice.Endpoints {
		if len(e.Addresses) == 0 {
			return o.fail(fmt.Sprintf("endpoints[%d].addresses", i), "at least one address is required")
		}
		for j, a := range e.Addresses {
			if err := checkName(o, fmt.Sprintf("endpoints[%d].addresses[%d]", i, j), a, dnsSubdomain); err != nil {
				return err
			}
		}
	}
	return nil
}
