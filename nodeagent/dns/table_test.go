package dns

import (
	"fmt"
	"testing"

	"github.com/miekg/dns"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func TestTableRebuildsOnlyTheServicesThatChange(t *testing.T) {
	tb := synced(NewTable("cluster.local", DefaultTTL))
	h := NewHandler(tb, nil, nil)
	a := &v1.DNSRecords{Namespace: "default", Name: "a", Endpoints: []*v1.DNSEndpoint{{Address: "10.244.1.10", Hostname: "a-0"}}}
	b := &v1.DNSRecords{Namespace: "default", Name: "b", Endpoints: []*v1.DNSEndpoint{{Address: "10.244.1.10"}}}
	tb.SetRecords([]*v1.DNSRecords{a, b})
	tb.updatePorts(map[string]*v1.ServicePort{"other/web/v4": clusterIP("other", "web", "", tcp, "10.96.0.10:80")})
	web := tb.zone().services["web.other"]

	// One pod address in two headless services: a PTR for each.
	want := []string{"PTR 10-244-1-10.b.default.svc.cluster.local.", "PTR a-0.a.default.svc.cluster.local."}
	if got := rdata(ask(h, "10.1.244.10.in-addr.arpa.", dns.TypePTR, false, 0).Answer); !sameStrings(got, want) {
		t.Errorf("PTR %v, want %v", got, want)
	}
	tb.SetRecords([]*v1.DNSRecords{b})
	want = want[:1]
	if got := rdata(ask(h, "10.1.244.10.in-addr.arpa.", dns.TypePTR, false, 0).Answer); !sameStrings(got, want) {
		t.Errorf("PTR after a went: %v, want %v", got, want)
	}
	if tb.zone().services["web.other"] != web {
		t.Error("a change to default's services rebuilt other/web")
	}
	// A namespace exists while it has a service: NODATA, then NXDOMAIN.
	if resp := ask(h, "default.svc.cluster.local.", dns.TypeA, false, 0); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("namespace with a service: %s", dns.RcodeToString[resp.Rcode])
	}
	tb.SetRecords(nil)
	if resp := ask(h, "default.svc.cluster.local.", dns.TypeA, false, 0); resp.Rcode != dns.RcodeNameError {
		t.Errorf("namespace without services: %s", dns.RcodeToString[resp.Rcode])
	}
	if resp := ask(h, "10.1.244.10.in-addr.arpa.", dns.TypePTR, false, 0); resp.Rcode != dns.RcodeRefused {
		t.Errorf("a reverse name no service holds is not the zone's (refused without upstreams): %s", dns.RcodeToString[resp.Rcode])
	}
}

// Readers never lock: under -race this checks that a zone, once published, is never written.
func TestReadersSeeWholeZonesWhileWritersChangeThem(t *testing.T) {
	tb := synced(NewTable("cluster.local", DefaultTTL))
	h := NewHandler(tb, nil, nil)
	stop := make(chan struct{})
	errs := make(chan string, 4)
	for range 4 {
		go func() {
			for {
				select {
				case <-stop:
					errs <- ""
					return
				default:
				}
				got := rdata(ask(h, "web.default.svc.cluster.local.", dns.TypeA, false, 0).Answer)
				// One VIP or none, never both: each answer comes from one whole zone.
				if len(got) > 1 {
					errs <- fmt.Sprint("answer mixing two zones: ", got)
					return
				}
			}
		}()
	}
	for i := range 200 {
		vip := fmt.Sprintf("10.96.0.%d:80", 10+i%2)
		tb.updatePorts(map[string]*v1.ServicePort{"default/web/v4": clusterIP("default", "web", "", tcp, vip)})
		tb.SetRecords([]*v1.DNSRecords{{Namespace: "default", Name: fmt.Sprint("h", i%3), Endpoints: []*v1.DNSEndpoint{{Address: "10.244.1.10"}}}})
	}
	close(stop)
	for range 4 {
		if e := <-errs; e != "" {
			t.Error(e)
		}
	}
}
