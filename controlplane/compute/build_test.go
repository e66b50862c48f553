package compute

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func portView(t *testing.T, e *Engine, node, base string) PortView {
	t.Helper()
	for _, p := range e.Ports(node) {
		if p.Base == base {
			return p
		}
	}
	t.Fatalf("port %s missing on %s", base, node)
	return PortView{}
}

func frontendStrings(sp *v1.ServicePort) []string {
	var out []string
	for _, f := range sp.Frontends {
		s := fmt.Sprintf("%s %s:%d", strings.TrimPrefix(f.Kind.String(), "FRONTEND_KIND_"), f.Address, f.Port)
		if len(f.SourceRanges) > 0 {
			s += " from " + strings.Join(f.SourceRanges, ",")
		}
		out = append(out, s)
	}
	return out
}

func TestFrontendsOfEveryKind(t *testing.T) {
	s := svc(loadBalancer("203.0.113.10", "2001:db8::10"), func(s *model.Service) {
		s.LoadBalancerIngress = append(s.LoadBalancerIngress, model.LoadBalancerIngress{IP: netip.MustParseAddr("203.0.113.99"), IPMode: model.IPModeProxy})
		s.ExternalIPs = []netip.Addr{netip.MustParseAddr("192.0.2.7"), netip.MustParseAddr("2001:db8::7")}
		s.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8::/32")}
	})
	e := engineWith(t, s, nil, testNodes...)
	got := frontendStrings(portView(t, e, "n1", base).Service)
	want := []string{
		"CLUSTER_IP 10.96.0.10:80",
		"NODE_PORT :30080",
		"LOAD_BALANCER 203.0.113.10:80 from 10.0.0.0/8", // the Proxy-mode ingress IP is left out
		"EXTERNAL_IP 192.0.2.7:80",
	}
	if !slices.Equal(got, want) {
		t.Errorf("frontends:\n got %q\nwant %q", got, want)
	}
}

func TestSessionAffinityAndScheduler(t *testing.T) {
	s := svc(func(s *model.Service) { s.AffinityTimeoutSeconds = 600; s.Scheduler = "wlc" })
	e := engineWith(t, s, nil, testNodes...)
	sp := portView(t, e, "n1", base).Service
	if sp.GetSessionAffinity().GetTimeoutSeconds() != 600 || sp.Scheduler != "wlc" {
		t.Errorf("affinity %v scheduler %q, want 600s and wlc", sp.SessionAffinity, sp.Scheduler)
	}
	if sp := portView(t, engineWith(t, svc(), nil), "n1", base).Service; sp.SessionAffinity != nil {
		t.Errorf("affinity set without ClientIP: %v", sp.SessionAffinity)
	}
}

func TestDualStackServiceYieldsOnePortPerFamily(t *testing.T) {
	s := svc(func(s *model.Service) { s.ClusterIPs = append(s.ClusterIPs, netip.MustParseAddr("fd00::10")) })
	v4 := slice("web-v4", ep("10.1.0.1", "n1"))
	v6 := slice("web-v6", ep("fd00:1::1", "n1"), ep("fd00:1::2", "n2", terminating))
	e := engineWith(t, s, []*model.EndpointSlice{v4, v6}, testNodes...)
	got := summaries(e, "n3")
	want := map[string]string{
		"default/web:http/v4": "internal=cluster FORWARD 10.1.0.1:8080",
		"default/web:http/v6": "internal=cluster FORWARD [fd00:1::1]:8080",
	}
	if len(got) != len(want) || got["default/web:http/v4"] != want["default/web:http/v4"] || got["default/web:http/v6"] != want["default/web:http/v6"] {
		t.Errorf("got %v\nwant %v", got, want)
	}
	if fam := portView(t, e, "n3", "default/web:http/v6").Service.Family; fam != v1.IPFamily_IP_FAMILY_IPV6 {
		t.Errorf("v6 port family %v", fam)
	}
}

func TestMultiPortServiceResolvesNamedTargetPortsPerSlice(t *testing.T) {
	s := svc(func(s *model.Service) {
		s.Ports = []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}, {Name: "metrics", Protocol: model.TCP, Port: 9090}}
	})
	// Two pod templates name the same target ports differently, as during a rolling update.
	a := slice("web-a", ep("10.1.0.1", "n1"))
	a.Ports = []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}, {Name: "metrics", Protocol: model.TCP, Port: 9100}}
	b := slice("web-b", ep("10.1.0.2", "n2"))
	b.Ports = []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8081}}
	e := engineWith(t, s, []*model.EndpointSlice{a, b}, testNodes...)
	got := summaries(e, "n3")
	if want := "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8081"; got["default/web:http/v4"] != want {
		t.Errorf("http: got %s want %s", got["default/web:http/v4"], want)
	}
	if want := "internal=cluster FORWARD 10.1.0.1:9100"; got["default/web:metrics/v4"] != want {
		t.Errorf("metrics: got %s want %s", got["default/web:metrics/v4"], want)
	}
}

func TestHealthCheckNodePortCountsDistinctLocalReadyAddresses(t *testing.T) {
	s := svc(loadBalancer("203.0.113.10"), etpLocal, func(s *model.Service) { s.HealthCheckNodePort = 32000 })
	sl := slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n1"), ep("10.1.0.3", "n1", terminating), ep("10.1.0.4", "n2", terminating))
	e := engineWith(t, s, []*model.EndpointSlice{sl}, testNodes...)
	for node, want := range map[string]uint32{"n1": 2, "n2": 0, "n3": 0} {
		p := portView(t, e, node, base)
		if p.Service.HealthCheckNodePort != 32000 {
			t.Errorf("%s: healthCheckNodePort %d", node, p.Service.HealthCheckNodePort)
		}
		if got := p.Local.GetLocalReadyEndpoints(); got != want {
			t.Errorf("%s: local ready endpoints %d, want %d", node, got, want)
		}
	}
}

// An ETP Local load balancer without node ports whose ingress is not assigned yet, or is in Proxy
// mode, has no external destination on this port; its healthCheckNodePort must still answer from
// each node's local set (semantics.md), which once no node served.
func TestHealthCheckNodePortWithoutExternalDestinations(t *testing.T) {
	for name, ingress := range map[string][]model.LoadBalancerIngress{
		"not assigned yet": nil,
		"Proxy mode":       {{IP: netip.MustParseAddr("203.0.113.10"), IPMode: model.IPModeProxy}},
	} {
		s := svc(loadBalancer(), etpLocal, func(s *model.Service) {
			s.Ports[0].NodePort, s.HealthCheckNodePort, s.LoadBalancerIngress = 0, 32000, ingress
		})
		e := engineWith(t, s, []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2", terminating))}, testNodes...)
		for node, want := range map[string]uint32{"n1": 1, "n2": 0, "n3": 0} {
			p := portView(t, e, node, base)
			if p.Service.HealthCheckNodePort != 32000 || p.Local == nil || p.Local.LocalReadyEndpoints != want {
				t.Errorf("%s, %s: healthCheckNodePort %d, local set %v, want 32000 and %d local ready", name, node, p.Service.HealthCheckNodePort, p.Local, want)
			}
			if p.Service.External != nil {
				t.Errorf("%s, %s: external policy %v on a port with no external destination", name, node, p.Service.External)
			}
		}
	}
}

func TestProxyNameClaimsLabelledServices(t *testing.T) {
	labelled := svc(func(s *model.Service) { s.Labels = map[string]string{LabelServiceProxyName: "ganglion"} })
	if r := IgnoredReason(labelled, Options{}); r == "" {
		t.Error("without a proxy name, any service-proxy-name label must mean another proxy")
	}
	if r := IgnoredReason(labelled, Options{ProxyName: "ganglion"}); r != "" {
		t.Errorf("a service labelled for us is ignored: %s", r)
	}
	if r := IgnoredReason(svc(func(s *model.Service) { s.Labels = map[string]string{LabelServiceProxyName: "other"} }), Options{ProxyName: "ganglion"}); r == "" {
		t.Error("a service labelled for another proxy is proxied")
	}
}

func TestProbeSetsGoToTheNodesOfTheirEndpointsWhateverTheirCondition(t *testing.T) {
	s := svc(func(s *model.Service) {
		s.HealthCheck = &model.HealthCheck{Action: model.ProbeHTTPGet, Path: "/healthz", PeriodSeconds: 2, FailureThreshold: 2}
	})
	e := engineWith(t, s, []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n1", notReady), ep("10.1.0.3", "n2"))}, testNodes...)
	probes := func(node string) []string {
		r := e.Resolve(node, "default/web/probes")
		var out []string
		for _, tg := range probeTargets(r) {
			out = append(out, fmt.Sprintf("%s:%d", tg.Address, tg.Port))
		}
		return out
	}
	if got := probes("n1"); !slices.Equal(got, []string{"10.1.0.1:8080", "10.1.0.2:8080"}) {
		t.Errorf("n1 probes %v: a not-ready endpoint must still be probed", got)
	}
	if got := probes("n3"); got != nil {
		t.Errorf("n3 has no endpoints but probes %v", got)
	}
	var names []string
	e.ForEach("n2", func(r *Resource) { names = append(names, r.Name) })
	if !slices.Contains(names, "default/web/probes") {
		t.Errorf("n2's state %v lacks its probe set", names)
	}
}

func probeTargets(r *Resource) []*v1.ProbeTarget {
	if r == nil {
		return nil
	}
	return r.Msg.GetProbes().GetTargets()
}
