package compute

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

const base = "default/web:http/v4"

var testNodes = []*model.Node{node("n1", "a"), node("n2", "a"), node("n3", "b"), node("n4", "")}

// TestSemantics checks every rule and outcome of semantics.md on one port, as one node sees it.
func TestSemantics(t *testing.T) {
	cases := []struct {
		name   string
		svc    *model.Service
		eps    []model.Endpoint
		node   string
		want   string
		absent bool // the port must not exist at all
	}{
		// The cluster set and its fallbacks.
		{name: "ClusterIP forwards to every ready endpoint", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.2", "n2"), ep("10.1.0.1", "n1")},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080"},
		{name: "endpoints neither ready nor serving-terminating are never used", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1"), ep("10.1.0.2", "n1", notReady), ep("10.1.0.3", "n1", terminatingNotServing)},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080"},
		{name: "no endpoints at all rejects", svc: svc(), node: "n1", want: "internal=cluster REJECT"},
		{name: "only unusable endpoints rejects", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.2", "n1", notReady), ep("10.1.0.3", "n1", terminatingNotServing)},
			node: "n1", want: "internal=cluster REJECT"},
		{name: "cluster set falls back to serving-terminating endpoints", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", terminating), ep("10.1.0.2", "n2", notReady)},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080~"},
		{name: "ready endpoints win over terminating ones", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2", terminating)},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080"},

		// Topology.
		{name: "zone hints: PreferSameZone", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.3", "n3", zones("b"))},
			node: "n2", want: "internal=cluster FORWARD 10.1.0.1:8080"},
		{name: "zone hints: the other zone", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.3", "n3", zones("b"))},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.3:8080"},
		{name: "zone hints ignored when a ready endpoint has none", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.3", "n3")},
			node: "n2", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.3:8080"},
		{name: "zone hints ignored when none is for the node's zone", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.2", "n2", zones("a"))},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080"},
		{name: "a node without a zone never matches a hint", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.3", "n3", zones(""))},
			node: "n4", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.3:8080"},
		{name: "topology is decided by ready endpoints only", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.3", "n3", zones("b")), ep("10.1.0.9", "n3", terminating)},
			node: "n1", want: "internal=cluster FORWARD 10.1.0.1:8080"},
		{name: "node hints: PreferSameNode", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", forNodes("n1"), zones("a")), ep("10.1.0.2", "n2", forNodes("n2"), zones("a")), ep("10.1.0.3", "n3", forNodes("n3"), zones("b"))},
			node: "n2", want: "internal=cluster FORWARD 10.1.0.2:8080"},
		{name: "node hints: an unhinted node falls back to its zone", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", forNodes("n1"), zones("a")), ep("10.1.0.3", "n3", forNodes("n3"), zones("b"))},
			node: "n2", want: "internal=cluster FORWARD 10.1.0.1:8080"},
		{name: "node hints: an unhinted node without a zone uses all", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", forNodes("n1"), zones("a")), ep("10.1.0.3", "n3", forNodes("n3"), zones("b"))},
			node: "n4", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.3:8080"},
		{name: "node hints ignored when a ready endpoint has none; zone hints still apply", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", forNodes("n1"), zones("a")), ep("10.1.0.2", "n2", zones("a")), ep("10.1.0.3", "n3", forNodes("n3"), zones("b"))},
			node: "n1", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080"},
		{name: "hints do not apply to the terminating fallback", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", terminating, zones("a")), ep("10.1.0.3", "n3", terminating, zones("b"))},
			node: "n1", want: "internal=cluster FORWARD 10.1.0.1:8080~ 10.1.0.3:8080~"},

		// internalTrafficPolicy Local.
		{name: "ITP Local uses local ready endpoints", svc: svc(itpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", zones("b")), ep("10.1.0.2", "n2")},
			node: "n1", want: "internal=local FORWARD 10.1.0.1:8080"},
		{name: "ITP Local with no local endpoint drops", svc: svc(itpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2")},
			node: "n3", want: "internal=local DROP"},
		{name: "ITP Local with nothing usable anywhere rejects", svc: svc(itpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", notReady)},
			node: "n1", want: "internal=local REJECT"},
		{name: "ITP Local falls back to local serving-terminating endpoints", svc: svc(itpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", terminating), ep("10.1.0.2", "n2")},
			node: "n1", want: "internal=local FORWARD 10.1.0.1:8080~"},
		{name: "ITP Local prefers local ready over local terminating", svc: svc(itpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1"), ep("10.1.0.3", "n1", terminating)},
			node: "n1", want: "internal=local FORWARD 10.1.0.1:8080"},
		{name: "ITP Local with local endpoints only not ready drops", svc: svc(itpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", notReady), ep("10.1.0.2", "n2")},
			node: "n1", want: "internal=local DROP"},

		// externalTrafficPolicy.
		{name: "ETP Cluster NodePort masquerades to the cluster set", svc: svc(nodePort),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2")},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080 | external=cluster,masq FORWARD 10.1.0.1:8080 10.1.0.2:8080"},
		{name: "ETP Local keeps the client IP and uses local endpoints", svc: svc(nodePort, etpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2")},
			node: "n1", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080 | external=local FORWARD 10.1.0.1:8080"},
		{name: "ETP Local drops on a node without local endpoints", svc: svc(nodePort, etpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2")},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080 | external=local DROP"},
		{name: "ETP Local with nothing usable rejects both", svc: svc(loadBalancer("203.0.113.10"), etpLocal),
			node: "n3", want: "internal=cluster REJECT | external=local REJECT"},
		{name: "ETP Local falls back to local serving-terminating endpoints", svc: svc(nodePort, etpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", terminating), ep("10.1.0.2", "n2")},
			node: "n1", want: "internal=cluster FORWARD 10.1.0.2:8080 | external=local FORWARD 10.1.0.1:8080~"},
		{name: "ETP Local means nothing for a plain ClusterIP service", svc: svc(etpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1")},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080"},
		{name: "ETP Local applies to externalIPs of a ClusterIP service",
			svc:  svc(etpLocal, func(s *model.Service) { s.ExternalIPs = []netip.Addr{netip.MustParseAddr("192.0.2.7")} }),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1")},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080 | external=local DROP"},
		{name: "ITP and ETP Local together", svc: svc(nodePort, etpLocal, itpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1")},
			node: "n3", want: "internal=local DROP | external=local DROP"},
		{name: "ITP Local with ETP Cluster still forwards external traffic", svc: svc(nodePort, itpLocal),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2")},
			node: "n3", want: "internal=local DROP | external=cluster,masq FORWARD 10.1.0.1:8080 10.1.0.2:8080"},
		{name: "a Proxy-mode LB IP without node ports is not external",
			svc: svc(loadBalancer(), etpLocal, func(s *model.Service) {
				s.Ports[0].NodePort = 0
				s.LoadBalancerIngress = []model.LoadBalancerIngress{{IP: netip.MustParseAddr("203.0.113.10"), IPMode: model.IPModeProxy}}
			}),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1")},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080"},
		{name: "an LB IP of the other family does not make the port external",
			svc:  svc(loadBalancer("2001:db8::10"), etpLocal, func(s *model.Service) { s.Ports[0].NodePort = 0 }),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1")},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080"},

		// Ports, families and duplicates.
		{name: "an address listed twice keeps its non-terminating copy", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", terminating), ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2", terminating)},
			node: "n3", want: "internal=cluster FORWARD 10.1.0.1:8080"},
		{name: "a slice port of another protocol does not match",
			svc:  svc(func(s *model.Service) { s.Ports[0].Protocol = model.UDP }),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1")},
			node: "n1", want: "internal=cluster REJECT"},
		{name: "weights are carried", svc: svc(),
			eps:  []model.Endpoint{ep("10.1.0.1", "n1", func(e *model.Endpoint) { e.Weight = 3 }), ep("10.1.0.2", "n1")},
			node: "n1", want: "internal=cluster FORWARD 10.1.0.1:8080*3 10.1.0.2:8080"},

		// Services that are not proxied.
		{name: "ExternalName", svc: svc(func(s *model.Service) { s.Type = model.TypeExternalName }), node: "n1", absent: true},
		{name: "headless", svc: svc(func(s *model.Service) { s.Headless, s.ClusterIPs = true, nil }), node: "n1", absent: true},
		{name: "labelled headless", svc: svc(func(s *model.Service) { s.Labels = map[string]string{LabelHeadless: ""} }), node: "n1", absent: true},
		{name: "labelled for another proxy", svc: svc(func(s *model.Service) { s.Labels = map[string]string{LabelServiceProxyName: "other"} }), node: "n1", absent: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := engineWith(t, tc.svc, []*model.EndpointSlice{slice("web-1", tc.eps...)}, testNodes...)
			got, ok := summaries(e, tc.node)[base]
			if tc.absent {
				if ok || len(e.NodeState(tc.node)) != 0 {
					t.Fatalf("service must not be proxied, got %q", got)
				}
				return
			}
			if !ok {
				t.Fatalf("port %s missing; state: %v", base, summaries(e, tc.node))
			}
			if got != tc.want {
				t.Errorf("node %s:\n got %s\nwant %s", tc.node, got, tc.want)
			}
		})
	}
}

func TestExplainGivesAReasonForEveryUnusedEndpoint(t *testing.T) {
	e := engineWith(t, svc(nodePort, etpLocal), []*model.EndpointSlice{slice("web-1",
		ep("10.1.0.1", "n1", zones("a")),
		ep("10.1.0.2", "n3", zones("b")),
		ep("10.1.0.3", "n1", notReady),
		ep("10.1.0.4", "n1", terminating),
		ep("10.1.0.5", "n1", terminatingNotServing),
	)}, testNodes...)
	got, err := e.Explain("n1", model.ServiceKey{Namespace: "default", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("want one port, got %d", len(got))
	}
	want := map[string]string{
		"10.1.0.1": "in:true ex:true ",
		"10.1.0.2": `in:false ex:false topology: hinted for zones [b], not a; external: on node "n3", not this one (traffic policy Local)`,
		"10.1.0.3": "in:false ex:false not ready; external: not ready",
		"10.1.0.4": "in:false ex:false terminating, and ready endpoints are used instead; external: terminating, and a ready endpoint on this node is used instead",
		"10.1.0.5": "in:false ex:false terminating and no longer serving; external: terminating and no longer serving",
	}
	for _, ex := range got[0].Endpoints {
		if s := fmt.Sprintf("in:%v ex:%v %s", ex.Internal, ex.External, ex.Reason); s != want[ex.Address] {
			t.Errorf("%s:\n got %s\nwant %s", ex.Address, s, want[ex.Address])
		}
	}
	if _, err := e.Explain("n1", model.ServiceKey{Namespace: "default", Name: "nope"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown service: %v", err)
	}
}
