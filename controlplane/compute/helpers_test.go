package compute

import (
	"net/netip"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// Builders for table tests: a ClusterIP service default/web with port http 80 -> 8080, and
// endpoints that are ready unless a modifier says otherwise.

func svc(mods ...func(*model.Service)) *model.Service {
	s := &model.Service{
		Namespace:  "default",
		Name:       "web",
		Type:       model.TypeClusterIP,
		ClusterIPs: []netip.Addr{netip.MustParseAddr("10.96.0.10")},
		Ports:      []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}},
	}
	for _, m := range mods {
		m(s)
	}
	return s
}

func nodePort(s *model.Service) {
	s.Type = model.TypeNodePort
	for i := range s.Ports {
		s.Ports[i].NodePort = 30000 + s.Ports[i].Port
	}
}

func loadBalancer(ips ...string) func(*model.Service) {
	return func(s *model.Service) {
		nodePort(s)
		s.Type = model.TypeLoadBalancer
		for _, ip := range ips {
			s.LoadBalancerIngress = append(s.LoadBalancerIngress, model.LoadBalancerIngress{IP: netip.MustParseAddr(ip)})
		}
	}
}

func etpLocal(s *model.Service) { s.ExternalTrafficLocal = true }
func itpLocal(s *model.Service) { s.InternalTrafficLocal = true }

func ep(addr, node string, mods ...func(*model.Endpoint)) model.Endpoint {
	e := model.Endpoint{Address: netip.MustParseAddr(addr), Ready: true, Serving: true, NodeName: node}
	for _, m := range mods {
		m(&e)
	}
	return e
}

func notReady(e *model.Endpoint) { e.Ready = false; e.Serving = false }

// terminating is a pod being deleted that still serves.
func terminating(e *model.Endpoint) { e.Ready = false; e.Serving = true; e.Terminating = true }

// terminatingNotServing is a pod being deleted that no longer passes its probe.
func terminatingNotServing(e *model.Endpoint) {
	e.Ready = false
	e.Serving = false
	e.Terminating = true
}

func zones(z ...string) func(*model.Endpoint) {
	return func(e *model.Endpoint) { e.ForZones = z }
}

func forNodes(n ...string) func(*model.Endpoint) {
	return func(e *model.Endpoint) { e.ForNodes = n }
}

func slice(name string, eps ...model.Endpoint) *model.EndpointSlice {
	fam := model.IPv4
	if len(eps) > 0 {
		fam = model.FamilyOf(eps[0].Address)
	}
	return &model.EndpointSlice{
		Namespace: "default", Name: name, Service: "web", Family: fam,
		Ports:     []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}},
		Endpoints: eps,
	}
}

func node(name, zone string) *model.Node { return &model.Node{Name: name, Zone: zone, Ready: true} }

// engineWith loads an engine with the given objects.
func engineWith(t testing.TB, s *model.Service, slices []*model.EndpointSlice, nodes ...*model.Node) *Engine {
	t.Helper()
	e := NewEngine(Options{})
	for _, n := range nodes {
		e.SetNode(n)
	}
	if s != nil {
		e.SetService(s)
	}
	for _, sl := range slices {
		e.SetSlice(sl)
	}
	return e
}

// summaries returns each port base's Summary as node sees it.
func summaries(e *Engine, node string) map[string]string {
	out := map[string]string{}
	for _, p := range e.Ports(node) {
		out[p.Base] = p.Summary()
	}
	return out
}
