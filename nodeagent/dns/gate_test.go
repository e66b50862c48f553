package dns

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// observing is a dataplane that records what the zone answered while the kernel was being
// programmed: the moment a gate must not have published the new VIP yet, nor kept the old one.
type observing struct {
	*dataplane.Recording
	h      *Handler
	during [][]string
}

func (o *observing) Apply(ctx context.Context, c dataplane.Change) map[string]error {
	o.during = append(o.during, rdata(ask(o.h, "web.default.svc.cluster.local.", dns.TypeA, false, 0).Answer))
	return o.Recording.Apply(ctx, c)
}

func webPort(vip string) dataplane.Port {
	return dataplane.Port{Base: "default/web:http/v4", Service: clusterIP("default", "web", "http", tcp, vip+":80")}
}

func TestGatePublishesOnlyWhatTheKernelServes(t *testing.T) {
	table := synced(NewTable("cluster.local", DefaultTTL))
	h := NewHandler(table, nil, nil)
	dp := &observing{Recording: dataplane.NewRecording(), h: h}
	g := NewGate(dp, table, nil)
	answer := func() []string {
		return rdata(ask(h, "web.default.svc.cluster.local.", dns.TypeA, false, 0).Answer)
	}
	steps := []struct {
		what         string
		change       dataplane.Change
		fail         bool
		during, want []string
	}{
		{"added: published after Apply", dataplane.Change{Upserts: []dataplane.Port{webPort("10.96.0.10")}}, false, nil, []string{"A 10.96.0.10"}},
		{"unchanged answers stay during Apply", dataplane.Change{Upserts: []dataplane.Port{webPort("10.96.0.10")}}, false, []string{"A 10.96.0.10"}, []string{"A 10.96.0.10"}},
		{"VIP changed: neither VIP during Apply", dataplane.Change{Upserts: []dataplane.Port{webPort("10.96.0.11")}}, false, nil, []string{"A 10.96.0.11"}},
		{"failed change keeps the old VIP", dataplane.Change{Upserts: []dataplane.Port{webPort("10.96.0.12")}}, true, nil, []string{"A 10.96.0.11"}},
		{"removed: gone before Apply", dataplane.Change{Removals: []string{"default/web:http/v4"}}, false, nil, nil},
		{"failed add publishes nothing", dataplane.Change{Upserts: []dataplane.Port{webPort("10.96.0.13")}}, true, nil, nil},
	}
	for _, s := range steps {
		dp.Fail = nil
		if s.fail {
			dp.Fail = func(dataplane.Port) error { return errors.New("kernel said no") }
		}
		failed := g.Apply(t.Context(), s.change)
		if (len(failed) > 0) != s.fail {
			t.Fatalf("%s: failed %v", s.what, failed)
		}
		if during := dp.during[len(dp.during)-1]; !sameStrings(during, s.during) {
			t.Errorf("%s: answered %v while the kernel was programmed, want %v", s.what, during, s.during)
		}
		if got := answer(); !sameStrings(got, s.want) {
			t.Errorf("%s: answered %v after, want %v", s.what, got, s.want)
		}
	}
}

func TestGatePruneWithdrawsWhatItDoesNotKeep(t *testing.T) {
	table := NewTable("cluster.local", DefaultTTL)
	h := NewHandler(table, nil, nil)
	dp := dataplane.NewRecording()
	g := NewGate(dp, table, nil)
	g.Apply(t.Context(), dataplane.Change{Upserts: []dataplane.Port{webPort("10.96.0.10"),
		{Base: "default/api/v4", Service: clusterIP("default", "api", "", tcp, "10.96.0.20:80")}}})
	if err := g.Prune(t.Context(), map[string]bool{"default/api/v4": true}); err != nil {
		t.Fatal(err)
	}
	if resp := ask(h, "web.default.svc.cluster.local.", dns.TypeA, false, 0); resp.Rcode != dns.RcodeNameError {
		t.Errorf("pruned web: %s %v", dns.RcodeToString[resp.Rcode], rdata(resp.Answer))
	}
	if got := rdata(ask(h, "api.default.svc.cluster.local.", dns.TypeA, false, 0).Answer); !sameStrings(got, []string{"A 10.96.0.20"}) {
		t.Errorf("kept api: %v", got)
	}
	if got := dp.Bases(); len(got) != 1 || got[0] != "default/api/v4" {
		t.Errorf("the wrapped dataplane was not pruned: %v", got)
	}
}

func TestSameAnswers(t *testing.T) {
	base := clusterIP("default", "web", "http", tcp, "10.96.0.10:80")
	cases := []struct {
		what string
		p    *v1.ServicePort
		same bool
	}{
		{"identical", clusterIP("default", "web", "http", tcp, "10.96.0.10:80"), true},
		{"other VIP", clusterIP("default", "web", "http", tcp, "10.96.0.11:80"), false},
		{"other port", clusterIP("default", "web", "http", tcp, "10.96.0.10:81"), false},
		{"other port name", clusterIP("default", "web", "https", tcp, "10.96.0.10:80"), false},
		{"other protocol", clusterIP("default", "web", "http", udp, "10.96.0.10:80"), false},
		{"a NodePort added", func() *v1.ServicePort {
			p := clusterIP("default", "web", "http", tcp, "10.96.0.10:80")
			p.Frontends = append(p.Frontends, &v1.Frontend{Kind: v1.FrontendKind_FRONTEND_KIND_NODE_PORT, Port: 30080})
			return p
		}(), true},
	}
	for _, c := range cases {
		if got := sameAnswers(base, c.p); got != c.same {
			t.Errorf("%s: sameAnswers %v, want %v", c.what, got, c.same)
		}
	}
}

func TestNothingInTheDomainIsCertainBeforeTheFirstPrune(t *testing.T) {
	table := NewTable("cluster.local", DefaultTTL)
	var calls atomic.Int32
	h := NewHandler(table, NewForwarder([]string{"192.0.2.53:53"}, upstream(30, &calls), 2, 10), nil)
	g := NewGate(dataplane.NewRecording(), table, nil)
	g.Apply(t.Context(), dataplane.Change{Upserts: []dataplane.Port{webPort("10.96.0.10")}})
	for _, name := range []string{"web.default.svc.cluster.local.", "other.default.svc.cluster.local."} {
		if resp := ask(h, name, dns.TypeA, false, 0); resp.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s before the state is complete: %s, want SERVFAIL", name, dns.RcodeToString[resp.Rcode])
		}
	}
	if resp := ask(h, "example.org.", dns.TypeA, false, 0); resp.Rcode != dns.RcodeSuccess {
		t.Errorf("forwarding before the state is complete: %s", dns.RcodeToString[resp.Rcode])
	}
	if err := g.Prune(t.Context(), map[string]bool{"default/web:http/v4": true}); err != nil {
		t.Fatal(err)
	}
	if got := rdata(ask(h, "web.default.svc.cluster.local.", dns.TypeA, false, 0).Answer); !sameStrings(got, []string{"A 10.96.0.10"}) {
		t.Errorf("after the first prune: %v", got)
	}
	if resp := ask(h, "other.default.svc.cluster.local.", dns.TypeA, false, 0); resp.Rcode != dns.RcodeNameError {
		t.Errorf("an unknown name after the first prune: %s, want NXDOMAIN", dns.RcodeToString[resp.Rcode])
	}
}
