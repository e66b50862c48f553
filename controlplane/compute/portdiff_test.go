package compute

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestDiffPorts checks the per-node plan of a change against what each node is then told: the
// diff is computed from the change's delta only, so a missed name would show as a missing line.
func TestDiffPorts(t *testing.T) {
	web := func(mods ...func(*model.Service)) *model.Service { return svc(mods...) }
	twoEps := []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2"))}
	nodes := []*model.Node{node("n1", "a"), node("n2", "b")}
	cases := []struct {
		name   string
		svc    *model.Service
		slices []*model.EndpointSlice
		change func(e *Engine) Delta
		want   []string
	}{{
		name: "nothing changes", svc: web(), slices: twoEps,
		change: func(e *Engine) Delta { return e.SetService(web()) },
	}, {
		name: "new service: every node gains its port", slices: twoEps,
		change: func(e *Engine) Delta { return e.SetService(web()) },
		want: []string{
			"n1 default/web:http/v4 ADDED +CLUSTER_IP 10.96.0.10:80 internal+10.1.0.1:8080 internal+10.1.0.2:8080",
			"n2 default/web:http/v4 ADDED +CLUSTER_IP 10.96.0.10:80 internal+10.1.0.1:8080 internal+10.1.0.2:8080",
		},
	}, {
		name: "deleted service: every node loses its port", svc: web(), slices: twoEps,
		change: func(e *Engine) Delta { return e.DeleteService(model.ServiceKey{Namespace: "default", Name: "web"}) },
		want: []string{
			"n1 default/web:http/v4 REMOVED -CLUSTER_IP 10.96.0.10:80 internal-10.1.0.1:8080 internal-10.1.0.2:8080",
			"n2 default/web:http/v4 REMOVED -CLUSTER_IP 10.96.0.10:80 internal-10.1.0.1:8080 internal-10.1.0.2:8080",
		},
	}, {
		name: "an endpoint goes not ready", svc: web(), slices: twoEps,
		change: func(e *Engine) Delta {
			return e.SetSlice(slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2", notReady)))
		},
		want: []string{
			"n1 default/web:http/v4 CHANGED internal-10.1.0.2:8080",
			"n2 default/web:http/v4 CHANGED internal-10.1.0.2:8080",
		},
	}, {
		name: "ETP Local on a load balancer: each node keeps only its own endpoint for external traffic",
		svc:  web(loadBalancer("192.0.2.1")), slices: twoEps,
		change: func(e *Engine) Delta { return e.SetService(web(loadBalancer("192.0.2.1"), etpLocal)) },
		want: []string{
			"n1 default/web:http/v4 CHANGED external-10.1.0.2:8080 [external policy: cluster, masquerade -> local]",
			"n2 default/web:http/v4 CHANGED external-10.1.0.1:8080 [external policy: cluster, masquerade -> local]",
		},
	}, {
		name: "a new load-balancer address and a scheduler", svc: web(loadBalancer("192.0.2.1")), slices: twoEps,
		change: func(e *Engine) Delta {
			return e.SetService(web(loadBalancer("192.0.2.1", "192.0.2.2"), func(s *model.Service) { s.Scheduler = "wrr" }))
		},
		want: []string{
			"n1 default/web:http/v4 CHANGED +LOAD_BALANCER 192.0.2.2:80 [scheduler:  -> wrr]",
			"n2 default/web:http/v4 CHANGED +LOAD_BALANCER 192.0.2.2:80 [scheduler:  -> wrr]",
		},
	}, {
		name: "a new node gets every port", svc: web(), slices: twoEps,
		change: func(e *Engine) Delta { return e.SetNode(node("n3", "a")) },
		want: []string{
			"n3 default/web:http/v4 ADDED +CLUSTER_IP 10.96.0.10:80 internal+10.1.0.1:8080 internal+10.1.0.2:8080",
		},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := engineWith(t, c.svc, c.slices, nodes...)
			after := engineWith(t, c.svc, c.slices, nodes...)
			got := renderDiff(DiffPorts(before, after, c.change(after)))
			if !slices.Equal(got, c.want) {
				t.Errorf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
}

func renderDiff(nodes []*v1.NodeDiff) []string {
	var out []string
	for _, n := range nodes {
		for _, p := range n.Ports {
			parts := []string{n.Node, p.Resource, strings.TrimPrefix(p.Change.String(), "PORT_CHANGE_")}
			for _, f := range p.FrontendsAdded {
				parts = append(parts, fmt.Sprintf("+%s %s:%d", strings.TrimPrefix(f.Kind.String(), "FRONTEND_KIND_"), f.Address, f.Port))
			}
			for _, f := range p.FrontendsRemoved {
				parts = append(parts, fmt.Sprintf("-%s %s:%d", strings.TrimPrefix(f.Kind.String(), "FRONTEND_KIND_"), f.Address, f.Port))
			}
			for _, b := range p.InternalGained {
				parts = append(parts, fmt.Sprintf("internal+%s:%d", b.Address, b.Port))
			}
			for _, b := range p.InternalLost {
				parts = append(parts, fmt.Sprintf("internal-%s:%d", b.Address, b.Port))
			}
			for _, b := range p.ExternalGained {
				parts = append(parts, fmt.Sprintf("external+%s:%d", b.Address, b.Port))
			}
			for _, b := range p.ExternalLost {
				parts = append(parts, fmt.Sprintf("external-%s:%d", b.Address, b.Port))
			}
			if len(p.Other) > 0 {
				parts = append(parts, "["+strings.Join(p.Other, "; ")+"]")
			}
			out = append(out, strings.Join(parts, " "))
		}
	}
	return out
}
