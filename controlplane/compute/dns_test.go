package compute

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func headless(s *model.Service) { s.Headless, s.ClusterIPs = true, nil }

func externalName(name string) func(*model.Service) {
	return func(s *model.Service) {
		s.Type, s.ClusterIPs, s.Ports, s.ExternalName = model.TypeExternalName, nil, nil, name
	}
}

func hostname(h string) func(*model.Endpoint) { return func(e *model.Endpoint) { e.Hostname = h } }

// dnsSummary renders records as "addr[=hostname] ... | name/proto/port ... | cname", or "none".
func dnsSummary(r *v1.DNSRecords) string {
	if r == nil {
		return "none"
	}
	var eps, ports []string
	for _, e := range r.Endpoints {
		s := e.Address
		if e.Hostname != "" {
			s += "=" + e.Hostname
		}
		eps = append(eps, s)
	}
	for _, p := range r.Ports {
		ports = append(ports, fmt.Sprintf("%s/%s/%d", p.Name, strings.TrimPrefix(p.Protocol.String(), "PROTOCOL_"), p.Port))
	}
	return fmt.Sprintf("%s | %s | %s", strings.Join(eps, " "), strings.Join(ports, " "), r.ExternalName)
}

func TestDNSRecords(t *testing.T) {
	v6 := func(name string, eps ...model.Endpoint) *model.EndpointSlice {
		sl := slice(name, eps...)
		sl.Family = model.IPv6
		return sl
	}
	cases := []struct {
		name   string
		svc    *model.Service
		slices []*model.EndpointSlice
		want   string
	}{
		{"a ClusterIP service is answered from its ServicePorts", svc(), []*model.EndpointSlice{slice("a", ep("10.1.0.1", "n1"))}, "none"},
		{"headless with hostnames, sorted by address", svc(headless), []*model.EndpointSlice{
			slice("a", ep("10.1.0.10", "n1", hostname("web-1")), ep("10.1.0.9", "n2", hostname("web-0")))},
			"10.1.0.9=web-0 10.1.0.10=web-1 | http/TCP/8080 | "},
		{"headless without hostnames", svc(headless), []*model.EndpointSlice{slice("a", ep("10.1.0.2", "n1"), ep("10.1.0.1", "n2"))},
			"10.1.0.1 10.1.0.2 | http/TCP/8080 | "},
		{"not-ready and terminating endpoints are not named", svc(headless), []*model.EndpointSlice{
			slice("a", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n1", notReady), ep("10.1.0.3", "n2", terminating))},
			"10.1.0.1 | http/TCP/8080 | "},
		{"publishNotReadyAddresses names them all", svc(headless, func(s *model.Service) { s.PublishNotReadyAddresses = true }),
			[]*model.EndpointSlice{slice("a", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n1", notReady), ep("10.1.0.3", "n2", terminating))},
			"10.1.0.1 10.1.0.2 10.1.0.3 | http/TCP/8080 | "},
		{"dual stack: both families, v4 first", svc(headless), []*model.EndpointSlice{
			v6("b", ep("fd00::2", "n1", hostname("web-0"))), slice("a", ep("10.1.0.1", "n1", hostname("web-0")))},
			"10.1.0.1=web-0 fd00::2=web-0 | http/TCP/8080 | "},
		{"an address in two slices appears once, with the hostname one copy has", svc(headless), []*model.EndpointSlice{
			slice("a", ep("10.1.0.1", "n1")), slice("b", ep("10.1.0.1", "n1", hostname("web-0")))},
			"10.1.0.1=web-0 | http/TCP/8080 | "},
		{"a headless service with no endpoints still exists", svc(headless), nil, " | http/TCP/80 | "},
		{"ports carry the endpoints' port, sorted by name", svc(headless, func(s *model.Service) {
			s.Ports = []model.ServicePort{{Name: "metrics", Protocol: model.TCP, Port: 9090}, {Name: "dns", Protocol: model.UDP, Port: 53}}
		}), []*model.EndpointSlice{{Namespace: "default", Name: "a", Service: "web", Family: model.IPv4,
			Ports:     []model.EndpointPort{{Name: "dns", Protocol: model.UDP, Port: 5353}},
			Endpoints: []model.Endpoint{ep("10.1.0.1", "n1")}}},
			"10.1.0.1 | dns/UDP/5353 metrics/TCP/9090 | "},
		{"a headless service with no ports", svc(headless, func(s *model.Service) { s.Ports = nil }),
			[]*model.EndpointSlice{slice("a", ep("10.1.0.1", "n1"))}, "10.1.0.1 |  | "},
		{"ExternalName answers a CNAME", svc(externalName("db.example.com")), []*model.EndpointSlice{slice("a", ep("10.1.0.1", "n1"))},
			" |  | db.example.com"},
		{"ExternalName naming nothing has no records", svc(externalName("")), nil, "none"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := engineWith(t, c.svc, c.slices, node("n1", ""), node("n2", ""))
			got := dnsSummary(e.Resolve("n1", resname.DNS("default", "web")).GetMsg().GetDns())
			if got != c.want {
				t.Errorf("records = %q, want %q", got, c.want)
			}
		})
	}
}

// DNS records never enter the dataplane's state: a headless or ExternalName service leaves every
// node's state exactly as before (no port, no probe set), and its records are shared by all nodes.
func TestDNSRecordsStayOutOfTheDataplaneState(t *testing.T) {
	for _, mod := range []func(*model.Service){headless, externalName("db.example.com")} {
		e := engineWith(t, svc(mod), []*model.EndpointSlice{slice("a", ep("10.1.0.1", "n1"))}, node("n1", "a"), node("n2", "b"))
		if n := len(e.NodeState("n1")); n != 0 || e.StateSize() != 0 || e.ResourceCount() != 0 {
			t.Errorf("dataplane state: %d resources on n1, %d shared, %d in all; want none", n, e.StateSize(), e.ResourceCount())
		}
		var names []string
		e.ForEachDNS(func(r *Resource) { names = append(names, r.Name) })
		if !slices.Equal(names, []string{"default/web/dns"}) || e.DNSCount() != 1 {
			t.Errorf("DNS records %v (count %d), want [default/web/dns]", names, e.DNSCount())
		}
		if a, b := e.Resolve("n1", "default/web/dns"), e.Resolve("n2", "default/web/dns"); a == nil || a != b {
			t.Errorf("nodes in different zones see %p and %p, want one shared resource", a, b)
		}
	}
}

// A service turning headless gives up its ports for records, and back; each change says so.
func TestServiceTurningHeadlessAndBack(t *testing.T) {
	e := engineWith(t, svc(), []*model.EndpointSlice{slice("a", ep("10.1.0.1", "n1", hostname("web-0")))}, node("n1", ""))
	ports := slices.Collect(func(yield func(string) bool) {
		for _, p := range e.Ports("n1") {
			yield(p.Base)
		}
	})
	if !slices.Equal(ports, []string{"default/web:http/v4"}) || e.DNSCount() != 0 {
		t.Fatalf("ClusterIP: ports %v, %d records; want the port and no records", ports, e.DNSCount())
	}
	d := e.SetService(svc(headless))
	if !slices.Equal(d.DNS, []string{"default/web/dns"}) || len(d.Shared) == 0 {
		t.Errorf("to headless: delta %+v, want the records added and the port's resources removed", d)
	}
	if len(e.NodeState("n1")) != 0 || dnsSummary(e.Resolve("n1", "default/web/dns").GetMsg().GetDns()) != "10.1.0.1=web-0 | http/TCP/8080 | " {
		t.Errorf("headless: state %d resources, records %v", len(e.NodeState("n1")), e.Resolve("n1", "default/web/dns").GetMsg().GetDns())
	}
	d = e.SetService(svc())
	if !slices.Equal(d.DNS, []string{"default/web/dns"}) || e.Resolve("n1", "default/web/dns") != nil {
		t.Errorf("back to ClusterIP: delta %+v, records still resolve: %v", d, e.Resolve("n1", "default/web/dns") != nil)
	}
	if got := summaries(e, "n1"); len(got) != 1 {
		t.Errorf("back to ClusterIP: ports %v, want the one port again", got)
	}
}

// A headless service's endpoint change touches its records only: no dataplane name is dirty.
func TestHeadlessEndpointChangeTouchesOnlyItsRecords(t *testing.T) {
	e := engineWith(t, svc(headless), []*model.EndpointSlice{slice("a", ep("10.1.0.1", "n1"))}, node("n1", ""))
	before := e.Resolve("n1", "default/web/dns").Version
	d := e.SetSlice(slice("a", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n1")))
	if !slices.Equal(d.DNS, []string{"default/web/dns"}) || len(d.Shared)+len(d.Zones)+len(d.Nodes) != 0 {
		t.Errorf("delta %+v, want only the records", d)
	}
	if e.Resolve("n1", "default/web/dns").Version == before {
		t.Error("records kept their version after an endpoint was added")
	}
	// A not-ready endpoint is not named: the records, and so their version, stay as they are.
	if d := e.SetSlice(slice("a", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n1"), ep("10.1.0.3", "n1", notReady))); !d.Empty() {
		t.Errorf("adding a not-ready endpoint: delta %+v, want none", d)
	}
	if d := e.DeleteService(model.ServiceKey{Namespace: "default", Name: "web"}); !slices.Equal(d.DNS, []string{"default/web/dns"}) || e.DNSCount() != 0 {
		t.Errorf("delete: delta %+v, %d records left", d, e.DNSCount())
	}
}

// The records' version is pinned like every other kind's, so brain replicas agree; any field
// changes it.
func TestDNSRecordsVersionIsPinned(t *testing.T) {
	rec := func(mod func(*v1.DNSRecords)) string {
		r := &v1.DNSRecords{Namespace: "default", Name: "web",
			Endpoints: []*v1.DNSEndpoint{{Address: "10.1.0.1", Hostname: "web-0"}},
			Ports:     []*v1.DNSPort{{Name: "http", Protocol: v1.Protocol_PROTOCOL_TCP, Port: 8080}}}
		mod(r)
		return newResource("default/web/dns", &v1.Resource{Content: &v1.Resource_Dns{Dns: r}}).Version
	}
	base := rec(func(*v1.DNSRecords) {})
	if base != "2e8700faef36d092" {
		t.Errorf("version = %s: the canonical encoding of DNSRecords changed (every DNS agent resends its held list once)", base)
	}
	mods := map[string]func(*v1.DNSRecords){
		"namespace":     func(r *v1.DNSRecords) { r.Namespace = "other" },
		"name":          func(r *v1.DNSRecords) { r.Name = "other" },
		"address":       func(r *v1.DNSRecords) { r.Endpoints[0].Address = "10.1.0.2" },
		"hostname":      func(r *v1.DNSRecords) { r.Endpoints[0].Hostname = "" },
		"port name":     func(r *v1.DNSRecords) { r.Ports[0].Name = "web" },
		"protocol":      func(r *v1.DNSRecords) { r.Ports[0].Protocol = v1.Protocol_PROTOCOL_UDP },
		"port":          func(r *v1.DNSRecords) { r.Ports[0].Port = 8081 },
		"external_name": func(r *v1.DNSRecords) { r.ExternalName = "x" },
	}
	for field, mod := range mods {
		if rec(mod) == base {
			t.Errorf("changing %s kept the version", field)
		}
	}
}
