package dns

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// bigHeadless is a headless service with n endpoints: more than 512 bytes of answers.
func bigHeadless(n int) *Table {
	t := NewTable("cluster.local", DefaultTTL)
	r := &v1.DNSRecords{Namespace: "default", Name: "big"}
	for i := range n {
		r.Endpoints = append(r.Endpoints, &v1.DNSEndpoint{Address: fmt.Sprintf("10.244.%d.%d", i/250, 1+i%250)})
	}
	t.SetRecords([]*v1.DNSRecords{r})
	return synced(t)
}

func TestLargeAnswersAreTruncatedOverUDPAndWholeOverTCP(t *testing.T) {
	h := NewHandler(bigHeadless(100), nil, nil)
	const name = "big.default.svc.cluster.local."
	cases := []struct {
		what      string
		tcp       bool
		edns      uint16
		truncated bool
		maxLen    int
	}{
		{"UDP without EDNS0", false, 0, true, dns.MinMsgSize},
		{"UDP with a 4096-byte buffer: capped at ours", false, 4096, true, ourUDPSize},
		{"TCP", true, 0, false, dns.MaxMsgSize},
	}
	for _, c := range cases {
		resp := ask(h, name, dns.TypeA, c.tcp, c.edns)
		wire, err := resp.Pack()
		if err != nil {
			t.Fatal(err)
		}
		if resp.Truncated != c.truncated || len(wire) > c.maxLen {
			t.Errorf("%s: TC %v, %d bytes; want TC %v, at most %d bytes", c.what, resp.Truncated, len(wire), c.truncated, c.maxLen)
		}
		if !c.truncated && len(resp.Answer) != 100 {
			t.Errorf("%s: %d answers, want all 100", c.what, len(resp.Answer))
		}
		if (c.edns > 0) != (resp.IsEdns0() != nil) {
			t.Errorf("%s: EDNS0 in the reply %v, the query had it %v", c.what, resp.IsEdns0() != nil, c.edns > 0)
		}
	}
}

func TestMalformedAndHostileQueries(t *testing.T) {
	h := NewHandler(testTable(), nil, nil)
	q := func(mut func(*dns.Msg)) *dns.Msg {
		m := new(dns.Msg)
		m.SetQuestion("web.default.svc.cluster.local.", dns.TypeA)
		mut(m)
		return h.Answer(context.Background(), m, false)
	}
	if resp := q(func(m *dns.Msg) { m.Response = true }); resp != nil {
		t.Errorf("a response was answered: %v", resp)
	}
	cases := []struct {
		what  string
		mut   func(*dns.Msg)
		rcode int
	}{
		{"an update", func(m *dns.Msg) { m.Opcode = dns.OpcodeUpdate }, dns.RcodeNotImplemented},
		{"two questions", func(m *dns.Msg) { m.Question = append(m.Question, m.Question[0]) }, dns.RcodeFormatError},
		{"no question", func(m *dns.Msg) { m.Question = nil }, dns.RcodeFormatError},
		{"CHAOS class", func(m *dns.Msg) { m.Question[0].Qclass = dns.ClassCHAOS }, dns.RcodeRefused},
		{"IXFR", func(m *dns.Msg) { m.Question[0].Qtype = dns.TypeIXFR }, dns.RcodeRefused},
		{"a relative name", func(m *dns.Msg) { m.Question[0].Name = "web" }, dns.RcodeFormatError},
	}
	for _, c := range cases {
		if resp := q(c.mut); resp == nil || resp.Rcode != c.rcode || len(resp.Answer) != 0 {
			t.Errorf("%s: %v, want %s and no answer", c.what, resp, dns.RcodeToString[c.rcode])
		}
	}
}

// upstream is a fake resolver counting its questions; every name has one A record.
func upstream(ttl uint32, calls *atomic.Int32) *FakeUpstream {
	return &FakeUpstream{Answer: func(m *dns.Msg, network, addr string) (*dns.Msg, error) {
		calls.Add(1)
		r := new(dns.Msg)
		r.SetReply(m)
		if m.Question[0].Name == "missing.example." {
			r.Rcode = dns.RcodeNameError
			r.Ns = []dns.RR{&dns.SOA{Hdr: dns.RR_Header{Name: "example.", Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: 60}, Minttl: ttl}}
			return r, nil
		}
		r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: m.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: []byte{192, 0, 2, 1}}}
		return r, nil
	}}
}

func TestForwardingCachesWithinTheTTL(t *testing.T) {
	var calls atomic.Int32
	now := time.Unix(1000, 0)
	fwd := NewForwarder([]string{"192.0.2.53:53"}, upstream(10, &calls), 4, 100)
	fwd.cache.now = func() time.Time { return now }
	m := NewMetrics(prometheus.NewRegistry())
	h := NewHandler(testTable(), fwd, m)
	for range 3 {
		if got := rdata(ask(h, "Example.ORG.", dns.TypeA, false, 0).Answer); !sameStrings(got, []string{"A 192.0.2.1"}) {
			t.Fatalf("forwarded answer %v", got)
		}
	}
	if calls.Load() != 1 {
		t.Errorf("upstream asked %d times for one name within its TTL, want 1", calls.Load())
	}
	now = now.Add(4 * time.Second)
	if resp := ask(h, "example.org.", dns.TypeA, false, 0); resp.Answer[0].Header().Ttl != 6 {
		t.Errorf("cached TTL after 4s of 10s: %d, want 6", resp.Answer[0].Header().Ttl)
	}
	now = now.Add(7 * time.Second)
	ask(h, "example.org.", dns.TypeA, false, 0)
	if calls.Load() != 2 {
		t.Errorf("upstream asked %d times after the TTL ran out, want 2", calls.Load())
	}
	// Negative answers are cached for the SOA's minimum; the zone's own names never go upstream.
	for range 2 {
		if resp := ask(h, "missing.example.", dns.TypeA, false, 0); resp.Rcode != dns.RcodeNameError {
			t.Fatalf("missing.example: %s", dns.RcodeToString[resp.Rcode])
		}
	}
	ask(h, "nope.default.svc.cluster.local.", dns.TypeA, false, 0)
	if calls.Load() != 3 {
		t.Errorf("upstream asked %d times, want 3", calls.Load())
	}
	for _, c := range []struct {
		source, rcode string
		want          float64
	}{{"upstream", "NOERROR", 2}, {"cache", "NOERROR", 3}, {"upstream", "NXDOMAIN", 1}, {"cache", "NXDOMAIN", 1}, {"zone", "NXDOMAIN", 1}} {
		if got := testutil.ToFloat64(m.answers.WithLabelValues(c.source, c.rcode)); got != c.want {
			t.Errorf("answers{source=%s,rcode=%s} = %v, want %v", c.source, c.rcode, got, c.want)
		}
	}
}

func TestCacheIsBounded(t *testing.T) {
	var calls atomic.Int32
	fwd := NewForwarder([]string{"192.0.2.53:53"}, upstream(30, &calls), 4, 10)
	h := NewHandler(testTable(), fwd, nil)
	for i := range 100 {
		ask(h, fmt.Sprintf("n%d.example.", i), dns.TypeA, false, 0)
	}
	if n := fwd.cache.len(); n > 10 || n == 0 {
		t.Errorf("cache holds %d entries, bound 10", n)
	}
}

func TestForwardingIsBoundedInFlight(t *testing.T) {
	release := make(chan struct{})
	var waiting sync.WaitGroup
	waiting.Add(2)
	slow := &FakeUpstream{Answer: func(m *dns.Msg, network, addr string) (*dns.Msg, error) {
		waiting.Done()
		<-release
		r := new(dns.Msg)
		return r.SetReply(m), nil
	}}
	m := NewMetrics(prometheus.NewRegistry())
	h := NewHandler(testTable(), NewForwarder([]string{"192.0.2.53:53"}, slow, 2, 10), m)
	done := make(chan struct{})
	for i := range 2 {
		go func() { ask(h, fmt.Sprintf("slow%d.example.", i), dns.TypeA, false, 0); done <- struct{}{} }()
	}
	waiting.Wait()
	if resp := ask(h, "third.example.", dns.TypeA, false, 0); resp.Rcode != dns.RcodeServerFailure {
		t.Errorf("a third question with two in flight (bound 2): %s, want SERVFAIL at once", dns.RcodeToString[resp.Rcode])
	}
	if got := testutil.ToFloat64(m.busy); got != 1 {
		t.Errorf("ganglion_dns_forward_busy_total = %v, want 1", got)
	}
	close(release)
	<-done
	<-done
}

func TestForwardingTriesTheNextUpstreamAndTCPOnTruncation(t *testing.T) {
	var asked []string
	ex := &FakeUpstream{Answer: func(m *dns.Msg, network, addr string) (*dns.Msg, error) {
		asked = append(asked, network+" "+addr)
		if addr == "192.0.2.1:53" {
			return nil, errors.New("timeout")
		}
		r := new(dns.Msg)
		r.SetReply(m)
		r.Truncated = network == "udp"
		return r, nil
	}}
	h := NewHandler(testTable(), NewForwarder([]string{"192.0.2.1:53", "192.0.2.2:53"}, ex, 2, 10), nil)
	if resp := ask(h, "example.org.", dns.TypeA, false, 0); resp.Rcode != dns.RcodeSuccess || resp.Truncated {
		t.Errorf("reply %s truncated %v", dns.RcodeToString[resp.Rcode], resp.Truncated)
	}
	want := []string{"udp 192.0.2.1:53", "udp 192.0.2.2:53", "tcp 192.0.2.2:53"}
	if !sameStrings(asked, want) || len(asked) != len(want) {
		t.Errorf("asked %v, want %v", asked, want)
	}
}

func TestExternalNameIsChasedUpstream(t *testing.T) {
	var calls atomic.Int32
	h := NewHandler(testTable(), NewForwarder([]string{"192.0.2.53:53"}, upstream(30, &calls), 2, 10), nil)
	want := []string{"CNAME example.org.", "A 192.0.2.1"}
	if got := rdata(ask(h, "ext.default.svc.cluster.local.", dns.TypeA, false, 0).Answer); !sameStrings(got, want) {
		t.Errorf("ExternalName answered %v, want %v", got, want)
	}
}

func TestIdenticalQuestionsInFlightAreAskedOnce(t *testing.T) {
	asked, release := make(chan struct{}, 10), make(chan struct{})
	var calls atomic.Int32
	slow := &FakeUpstream{Answer: func(m *dns.Msg, network, addr string) (*dns.Msg, error) {
		calls.Add(1)
		asked <- struct{}{}
		<-release
		r := new(dns.Msg)
		return r.SetReply(m), nil
	}}
	// One slot: without coalescing, the second question would be refused at once.
	h := NewHandler(testTable(), NewForwarder([]string{"192.0.2.53:53"}, slow, 1, 10), nil)
	results := make(chan *dns.Msg, 2)
	go func() { results <- ask(h, "same.example.", dns.TypeA, false, 0) }()
	<-asked
	go func() { results <- ask(h, "same.example.", dns.TypeA, false, 0) }()
	select {
	case resp := <-results:
		t.Fatalf("the second question was answered (%s) before the upstream answered the first", dns.RcodeToString[resp.Rcode])
	case <-time.After(200 * time.Millisecond): // a grace period for the bug to show, not a timing
	}
	close(release)
	for range 2 {
		if resp := <-results; resp.Rcode != dns.RcodeSuccess {
			t.Errorf("a coalesced question: %s", dns.RcodeToString[resp.Rcode])
		}
	}
	if calls.Load() != 1 {
		t.Errorf("upstream asked %d times for two identical questions in flight, want 1", calls.Load())
	}
}
