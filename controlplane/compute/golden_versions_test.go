package compute

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// goldenEngine is a fixed cluster that reaches every field of the canonical encoding: a dual-stack
// ETP Local load balancer with source ranges, affinity, a scheduler, a health-check node port, zone
// hints, weights, a terminating endpoint and an HTTP probe; an ITP Local UDP service with a TCP
// probe; and an SCTP port with an exec probe.
func goldenEngine(t *testing.T) *Engine {
	web := &model.Service{
		Namespace: "default", Name: "web", Type: model.TypeLoadBalancer,
		ClusterIPs:               []netip.Addr{netip.MustParseAddr("10.96.0.10"), netip.MustParseAddr("fd00::10")},
		LoadBalancerIngress:      []model.LoadBalancerIngress{{IP: netip.MustParseAddr("203.0.113.10")}},
		LoadBalancerSourceRanges: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Ports:                    []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80, NodePort: 30080}},
		ExternalTrafficLocal:     true, AffinityTimeoutSeconds: 600, HealthCheckNodePort: 32000, Scheduler: "wrr",
		HealthCheck: &model.HealthCheck{Action: model.ProbeHTTPGet, Path: "/healthz", Port: 8080, Scheme: "HTTP", PeriodSeconds: 2, TimeoutSeconds: 1, SuccessThreshold: 1, FailureThreshold: 3},
	}
	webV4 := slice("web-v4",
		ep("10.1.0.1", "n1", zones("a"), func(e *model.Endpoint) { e.Weight = 2 }),
		ep("10.1.0.2", "n2", zones("a"), terminating),
		ep("10.1.0.3", "n3", zones("b")))
	webV6 := slice("web-v6", ep("fd00:1::1", "n1"))
	dns := &model.Service{
		Namespace: "kube-system", Name: "dns", Type: model.TypeClusterIP, InternalTrafficLocal: true,
		ClusterIPs:  []netip.Addr{netip.MustParseAddr("10.96.0.53")},
		Ports:       []model.ServicePort{{Name: "dns", Protocol: model.UDP, Port: 53}},
		HealthCheck: &model.HealthCheck{Action: model.ProbeTCPSocket, Port: 53, PeriodSeconds: 5, FailureThreshold: 1},
	}
	dnsSlice := &model.EndpointSlice{Namespace: "kube-system", Name: "dns-1", Service: "dns", Family: model.IPv4,
		Ports:     []model.EndpointPort{{Name: "dns", Protocol: model.UDP, Port: 5353}},
		Endpoints: []model.Endpoint{ep("10.2.0.1", "n1"), ep("10.2.0.2", "n3", notReady)}}
	job := &model.Service{
		Namespace: "batch", Name: "job", Type: model.TypeClusterIP,
		ClusterIPs:  []netip.Addr{netip.MustParseAddr("10.96.0.99")},
		Ports:       []model.ServicePort{{Protocol: model.SCTP, Port: 9}},
		HealthCheck: &model.HealthCheck{Action: model.ProbeExec, Command: []string{"/bin/check", "--quick"}, InitialDelaySeconds: 4},
	}
	e := engineWith(t, web, []*model.EndpointSlice{webV4, webV6}, testNodes...)
	e.SetService(dns)
	e.SetSlice(dnsSlice)
	e.SetService(job)
	e.SetSlice(&model.EndpointSlice{Namespace: "batch", Name: "job-1", Service: "job", Family: model.IPv4,
		Ports:     []model.EndpointPort{{Protocol: model.SCTP, Port: 9}},
		Endpoints: []model.Endpoint{ep("10.3.0.1", "n4")}})
	return e
}

// layerVersions lists every resource the engine holds, in every layer, as "layer name version".
func layerVersions(e *Engine) []string {
	var out []string
	for name, r := range e.defaults {
		out = append(out, fmt.Sprintf("default %s %s", name, r.Version))
	}
	for z, m := range e.byZone {
		for name, r := range m {
			out = append(out, fmt.Sprintf("zone:%s %s %s", z, name, r.Version))
		}
	}
	for n, m := range e.byNode {
		for name, r := range m {
			out = append(out, fmt.Sprintf("node:%s %s %s", n, name, r.Version))
		}
	}
	slices.Sort(out)
	return out
}

// TestVersionsArePinned fixes every version of the golden cluster. Versions are a hash of our own
// canonical encoding so that replicas built at different times agree (canonical.go): a change to
// the encoding, the hash or what compute puts in a resource fails here, and must be deliberate
// (every agent then receives everything once more). The version of the empty DROP set
// (1ed207aae505f1a0) and zone b's set, bytes and version (TestCanonicalEncodingIsPinned) were
// recomputed outside Go from the layout canonical.go describes.
func TestVersionsArePinned(t *testing.T) {
	want := []string{
		"default batch/job/v4/cluster 7bd66cccbacb3a86",
		"default batch/job/v4/service 1ecb3c6ce953eb2c",
		"default default/web:http/v4/cluster 346185e548780488",
		"default default/web:http/v4/local 1ed207aae505f1a0",
		"default default/web:http/v4/service d46efc05482050ea",
		"default default/web:http/v6/cluster ca7a831ef8a93a8d",
		"default default/web:http/v6/local 1ed207aae505f1a0",
		"default default/web:http/v6/service 0a2018a5de710333",
		"default kube-system/dns:dns/v4/local 1ed207aae505f1a0",
		"default kube-system/dns:dns/v4/service 68885ee628d369f8",
		"node:n1 default/web/probes 4e6c61055d4521d7",
		"node:n1 default/web:http/v4/local 2e9432f1989ab2c4",
		"node:n1 default/web:http/v6/local c637c0ad3135738f",
		"node:n1 kube-system/dns/probes 508bc8573de9a501",
		"node:n1 kube-system/dns:dns/v4/local b8705aed51361ac4",
		"node:n2 default/web/probes a7e421b431e4cc78",
		"node:n2 default/web:http/v4/local 6f3dfce6d5ac2ebb",
		"node:n3 default/web/probes 7882444ddc953388",
		"node:n3 default/web:http/v4/local 1448bb46efe7c22e",
		"node:n3 kube-system/dns/probes fa627dc8e51af72f",
		"node:n4 batch/job/probes f6258ae76b6a9bfd",
		"zone:a default/web:http/v4/cluster c0c8ba2c29a2a2d7",
		"zone:b default/web:http/v4/cluster 7c68e880a1c5691c",
	}
	got := layerVersions(goldenEngine(t))
	if !slices.Equal(got, want) {
		t.Errorf("versions changed:\n got\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// TestCanonicalEncodingIsPinned pins the bytes behind one version: zone b's cluster set, one
// backend 10.1.0.3:8080 of weight 1. Layout: uvarint-length-prefixed "endpoints/1", action
// FORWARD (1), local ready 0, one backend (address, port 8080 = 0x903f, weight 1, not terminating).
func TestCanonicalEncodingIsPinned(t *testing.T) {
	r := goldenEngine(t).byZone["b"]["default/web:http/v4/cluster"]
	var c canon
	c.endpointSet(r.Msg.GetEndpoints())
	if got, want := hex.EncodeToString(c.b), "0b656e64706f696e74732f310100010831302e312e302e33903f0100"; got != want {
		t.Errorf("canonical bytes\n got %s\nwant %s", got, want)
	}
	if got, want := c.version(), "7c68e880a1c5691c"; got != want || r.Version != want {
		t.Errorf("version %s (resource says %s), want %s", got, r.Version, want)
	}
}
