package dns

import (
	"testing"

	"github.com/miekg/dns"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

const (
	tcp = v1.Protocol_PROTOCOL_TCP
	udp = v1.Protocol_PROTOCOL_UDP
)

// testTable holds a ClusterIP service in both families, a headless service with one named
// endpoint and one without, and an ExternalName service.
func testTable() *Table {
	t := NewTable("cluster.local", DefaultTTL)
	t.updatePorts(map[string]*v1.ServicePort{
		"default/web:http/v4": clusterIP("default", "web", "http", tcp, "10.96.0.10:80"),
		"default/web:http/v6": clusterIP("default", "web", "http", tcp, "[fd00::10]:80"),
		"default/web:dns/v4":  clusterIP("default", "web", "dns", udp, "10.96.0.10:53"),
		"kube/np/v4":          {Namespace: "kube", Name: "np", Frontends: []*v1.Frontend{{Kind: v1.FrontendKind_FRONTEND_KIND_NODE_PORT, Port: 30080}}},
	})
	t.SetRecords([]*v1.DNSRecords{
		{Namespace: "default", Name: "db", Endpoints: []*v1.DNSEndpoint{{Address: "10.244.1.10", Hostname: "db-0"}, {Address: "10.244.2.11"}},
			Ports: []*v1.DNSPort{{Name: "pg", Protocol: tcp, Port: 5432}}},
		{Namespace: "default", Name: "ext", ExternalName: "example.org"},
	})
	return synced(t)
}

func TestZoneAnswers(t *testing.T) {
	h := NewHandler(testTable(), nil, nil)
	cases := []struct {
		name  string
		qtype uint16
		rcode int
		want  []string
	}{
		{"web.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.96.0.10"}},
		{"WEB.Default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.96.0.10"}},
		{"web.default.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, []string{"AAAA fd00::10"}},
		{"_http._tcp.web.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV 0 100 80 web.default.svc.cluster.local."}},
		{"_dns._udp.web.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV 0 100 53 web.default.svc.cluster.local."}},
		{"web.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV 0 50 53 web.default.svc.cluster.local.", "SRV 0 50 80 web.default.svc.cluster.local."}},
		{"10.0.96.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"PTR web.default.svc.cluster.local."}},
		{"db.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.244.1.10", "A 10.244.2.11"}},
		{"db-0.db.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.244.1.10"}},
		{"10-244-2-11.db.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"A 10.244.2.11"}},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeSuccess, []string{"SRV 0 50 5432 10-244-2-11.db.default.svc.cluster.local.", "SRV 0 50 5432 db-0.db.default.svc.cluster.local."}},
		{"10.1.244.10.in-addr.arpa.", dns.TypePTR, dns.RcodeSuccess, []string{"PTR db-0.db.default.svc.cluster.local."}},
		{"ext.default.svc.cluster.local.", dns.TypeCNAME, dns.RcodeSuccess, []string{"CNAME example.org."}},
		{"ext.default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, []string{"CNAME example.org."}},
		// A port with no ClusterIP answers nothing; unknown names are NXDOMAIN.
		{"np.kube.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"nope.default.svc.cluster.local.", dns.TypeA, dns.RcodeNameError, nil},
		{"_nope._tcp.web.default.svc.cluster.local.", dns.TypeSRV, dns.RcodeNameError, nil},
		// Names that exist (or have children) but lack the type are NODATA.
		{"db.default.svc.cluster.local.", dns.TypeAAAA, dns.RcodeSuccess, nil},
		{"default.svc.cluster.local.", dns.TypeA, dns.RcodeSuccess, nil},
		{"cluster.local.", dns.TypeSOA, dns.RcodeSuccess, []string{"SOA ns.dns.cluster.local. hostmaster.cluster.local. 3 7200 1800 86400 5"}},
		// Zone transfers are refused; ANY gets one small HINFO.
		{"cluster.local.", dns.TypeAXFR, dns.RcodeRefused, nil},
		{"web.default.svc.cluster.local.", dns.TypeANY, dns.RcodeSuccess, []string{`HINFO "RFC8482" ""`}},
		// Without upstreams, a name outside the zone is refused.
		{"example.org.", dns.TypeA, dns.RcodeRefused, nil},
	}
	for _, c := range cases {
		resp := ask(h, c.name, c.qtype, false, 0)
		if resp.Rcode != c.rcode || !sameStrings(rdata(resp.Answer), c.want) {
			t.Errorf("%s %s: %s %v, want %s %v", c.name, dns.TypeToString[c.qtype],
				dns.RcodeToString[resp.Rcode], rdata(resp.Answer), dns.RcodeToString[c.rcode], c.want)
		}
		negative := len(c.want) == 0 && (c.rcode == dns.RcodeSuccess || c.rcode == dns.RcodeNameError) && c.qtype != dns.TypeAXFR
		if negative && (len(resp.Ns) != 1 || resp.Ns[0].Header().Rrtype != dns.TypeSOA) {
			t.Errorf("%s %s: negative answer without the SOA in authority: %v", c.name, dns.TypeToString[c.qtype], resp.Ns)
		}
	}
}

func TestSRVAnswersCarryTheTargetsAddresses(t *testing.T) {
	resp := ask(NewHandler(testTable(), nil, nil), "_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV, false, 0)
	if want := []string{"A 10.244.1.10", "A 10.244.2.11"}; !sameStrings(rdata(resp.Extra), want) {
		t.Errorf("additional %v, want %v", rdata(resp.Extra), want)
	}
}

func TestRecordsCarryTheTTL(t *testing.T) {
	resp := ask(NewHandler(testTable(), nil, nil), "web.default.svc.cluster.local.", dns.TypeA, false, 0)
	if len(resp.Answer) != 1 || resp.Answer[0].Header().Ttl != DefaultTTL || !resp.Authoritative {
		t.Errorf("answer %v (authoritative %v), want TTL %d", resp.Answer, resp.Authoritative, DefaultTTL)
	}
}

func TestInvalidNamesAreNotPublished(t *testing.T) {
	tb := synced(NewTable("cluster.local", DefaultTTL))
	tb.SetRecords([]*v1.DNSRecords{
		{Namespace: "default", Name: "bad.name", Endpoints: []*v1.DNSEndpoint{{Address: "10.0.0.1"}}},
		{Namespace: "default", Name: "ext", ExternalName: "not a name"},
		{Namespace: "default", Name: "odd", Endpoints: []*v1.DNSEndpoint{{Address: "nonsense"}, {Address: "10.0.0.2", Hostname: "Bad Host"}}},
	})
	h := NewHandler(tb, nil, nil)
	for _, name := range []string{"bad.name.default.svc.cluster.local.", "ext.default.svc.cluster.local."} {
		if resp := ask(h, name, dns.TypeA, false, 0); len(resp.Answer) != 0 {
			t.Errorf("%s answered %v", name, rdata(resp.Answer))
		}
	}
	// A hostname that is no label falls back to the dashed address.
	if resp := ask(h, "10-0-0-2.odd.default.svc.cluster.local.", dns.TypeA, false, 0); !sameStrings(rdata(resp.Answer), []string{"A 10.0.0.2"}) {
		t.Errorf("odd endpoint: %v", rdata(resp.Answer))
	}
}
