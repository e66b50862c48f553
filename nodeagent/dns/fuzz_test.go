package dns

import (
	"context"
	"testing"

	"github.com/miekg/dns"
)

// FuzzHandler feeds arbitrary bytes as a query, over UDP and TCP: whatever parses must get a reply
// that packs within the client's size, or none, and nothing may panic. Forwarded questions reach
// a fake upstream that echoes them.
func FuzzHandler(f *testing.F) {
	for _, q := range []struct {
		name  string
		qtype uint16
	}{
		{"web.default.svc.cluster.local.", dns.TypeA},
		{"_pg._tcp.db.default.svc.cluster.local.", dns.TypeSRV},
		{"10.0.96.10.in-addr.arpa.", dns.TypePTR},
		{"ext.default.svc.cluster.local.", dns.TypeA},
		{"cluster.local.", dns.TypeAXFR},
		{"example.org.", dns.TypeANY},
	} {
		m := new(dns.Msg)
		m.SetQuestion(q.name, q.qtype)
		m.SetEdns0(4096, true)
		wire, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wire, false)
	}
	f.Add([]byte{0, 0, 0x81, 0x80, 0, 1}, true)
	echo := &FakeUpstream{Answer: func(m *dns.Msg, network, addr string) (*dns.Msg, error) {
		r := new(dns.Msg)
		return r.SetReply(m), nil
	}}
	h := NewHandler(testTable(), NewForwarder([]string{"192.0.2.53:53"}, echo, 4, 100), nil)
	f.Fuzz(func(t *testing.T, wire []byte, tcp bool) {
		q := new(dns.Msg)
		if q.Unpack(wire) != nil {
			return // the server drops what does not parse before it reaches the handler
		}
		resp := h.Answer(context.Background(), q, tcp)
		if resp == nil {
			if !q.Response {
				t.Fatal("a query got no reply")
			}
			return
		}
		out, err := resp.Pack()
		if err != nil {
			t.Fatalf("reply does not pack: %v\n%v", err, resp)
		}
		if !tcp && len(out) > ourUDPSize || len(out) > dns.MaxMsgSize {
			t.Fatalf("reply of %d bytes over tcp=%v", len(out), tcp)
		}
	})
}
