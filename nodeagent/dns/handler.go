package dns

import (
	"context"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ourUDPSize is the EDNS0 buffer size we advertise: 1232 avoids IP fragmentation on any path
// (the DNS flag day 2020 figure).
const ourUDPSize = 1232

// forwardTimeout bounds the whole of a forwarded question, every upstream tried included.
const forwardTimeout = 4 * time.Second

// Handler answers DNS questions: the cluster domain and the reverse names of the addresses it
// holds from the table, everything else through the forwarder.
type Handler struct {
	table   *Table
	fwd     *Forwarder // nil: names outside the zone are refused
	metrics *Metrics   // nil: not counted
}

var _ dns.Handler = (*Handler)(nil)

// NewHandler returns a handler answering from t and forwarding through fwd (which may be nil),
// counting its answers in m (which may be nil).
func NewHandler(t *Table, fwd *Forwarder, m *Metrics) *Handler {
	return &Handler{table: t, fwd: fwd, metrics: m}
}

// ServeDNS answers one message, truncated to what the client can take over its transport.
func (h *Handler) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	resp := h.Answer(context.Background(), r, tcp)
	if resp == nil {
		return
	}
	_ = w.WriteMsg(resp) // a client gone away is nothing to report
}

// Answer returns the reply to r, or nil when r must not be answered (it is itself a response).
// tcp says how r came: a UDP reply is truncated to the client's size, with the TC bit set.
func (h *Handler) Answer(ctx context.Context, r *dns.Msg, tcp bool) *dns.Msg {
	if r.Response {
		return nil // answering answers is how reflection loops start
	}
	resp, source := h.answer(ctx, r, tcp)
	h.metrics.observe(source, resp.Rcode)
	fitTo(resp, r, tcp)
	return resp
}

// answer returns the reply and where it came from.
func (h *Handler) answer(ctx context.Context, r *dns.Msg, tcp bool) (*dns.Msg, string) {
	switch {
	case r.Opcode != dns.OpcodeQuery:
		return reply(r, dns.RcodeNotImplemented), sourceNone
	case len(r.Question) != 1:
		return reply(r, dns.RcodeFormatError), sourceNone
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if _, ok := dns.IsDomainName(name); !ok || !dns.IsFqdn(name) {
		return reply(r, dns.RcodeFormatError), sourceNone
	}
	switch {
	case q.Qtype == dns.TypeAXFR || q.Qtype == dns.TypeIXFR:
		return reply(r, dns.RcodeRefused), sourceNone // the zone is the cluster's inventory: not for transfer
	case q.Qclass != dns.ClassINET:
		return reply(r, dns.RcodeRefused), sourceNone
	case q.Qtype == dns.TypeANY:
		return minimalAny(r), sourceZone
	}
	z := h.table.zone()
	if !z.owns(name) {
		return h.forward(ctx, r, tcp)
	}
	if !z.complete {
		// Not synced yet: SERVFAIL says "ask again" (or another server), where NXDOMAIN would
		// be cached.
		return reply(r, dns.RcodeServerFailure), sourceNone
	}
	res := z.lookup(name, q.Qtype)
	resp := reply(r, res.rcode)
	resp.Authoritative = true
	resp.Answer, resp.Ns, resp.Extra = res.answer, res.ns, res.extra
	if res.chase != "" {
		h.chase(ctx, resp, res.chase, q.Qtype, tcp)
	}
	return resp, sourceZone
}

// chase resolves the target of an ExternalName's CNAME through the forwarder, as a recursive
// resolver would: stub resolvers (glibc, Go) do not follow a CNAME on their own.
func (h *Handler) chase(ctx context.Context, resp *dns.Msg, target string, qtype uint16, tcp bool) {
	resp.Authoritative = false
	if h.fwd == nil || qtype == dns.TypeCNAME {
		return
	}
	q := new(dns.Msg)
	q.SetQuestion(target, qtype)
	got, _ := h.forward(ctx, q, tcp)
	resp.Rcode = got.Rcode
	resp.Answer = append(resp.Answer, got.Answer...)
	resp.Ns = got.Ns
}

// forward sends a question outside the zone to the upstreams.
func (h *Handler) forward(ctx context.Context, r *dns.Msg, tcp bool) (*dns.Msg, string) {
	if h.fwd == nil {
		return reply(r, dns.RcodeRefused), sourceNone
	}
	// The bound is set here, not per message: a local answer needs no timer.
	ctx, cancel := context.WithTimeout(ctx, forwardTimeout)
	defer cancel()
	resp, cached, err := h.fwd.Forward(ctx, r, tcp)
	if err != nil {
		if errors.Is(err, ErrBusy) {
			h.metrics.observeBusy()
		}
		return reply(r, dns.RcodeServerFailure), sourceNone
	}
	resp.Id = r.Id
	resp.Question = r.Question // the client's spelling (0x20 case randomisation)
	if cached {
		return resp, sourceCache
	}
	return resp, sourceUpstream
}

// reply returns an empty reply to r with rcode.
func reply(r *dns.Msg, rcode int) *dns.Msg {
	resp := new(dns.Msg)
	resp.SetRcode(r, rcode)
	resp.RecursionAvailable = true
	if len(r.Question) > 1 {
		resp.Question = resp.Question[:1]
	}
	return resp
}

// minimalAny answers ANY with one synthesized HINFO record, as RFC 8482 allows: an ANY answer is
// the classic amplification, and no client needs it.
func minimalAny(r *dns.Msg) *dns.Msg {
	resp := reply(r, dns.RcodeSuccess)
	q := r.Question[0]
	resp.Answer = []dns.RR{&dns.HINFO{
		Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeHINFO, Class: dns.ClassINET, Ttl: 8482},
		Cpu: "RFC8482",
	}}
	return resp
}

// fitTo sets the reply's EDNS0 record as the request asked and truncates it to the size the
// client can take: 512 bytes over UDP without EDNS0, its advertised buffer (at most ours) with
// it, 64 KiB over TCP.
func fitTo(resp, r *dns.Msg, tcp bool) {
	resp.Compress = true
	kept := resp.Extra[:0:0]
	for _, rr := range resp.Extra {
		if rr.Header().Rrtype != dns.TypeOPT {
			kept = append(kept, rr)
		}
	}
	resp.Extra = kept
	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		resp.SetEdns0(ourUDPSize, opt.Do())
		size = int(min(max(opt.UDPSize(), dns.MinMsgSize), ourUDPSize))
	}
	if tcp {
		size = dns.MaxMsgSize
	}
	resp.Truncate(size)
}
