package dns

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// Exchanger sends one query to one upstream over network ("udp" or "tcp") and returns its reply.
type Exchanger interface {
	Exchange(ctx context.Context, m *dns.Msg, network, addr string) (*dns.Msg, error)
}

// NetExchanger is the Exchanger on real sockets.
type NetExchanger struct{}

var _ Exchanger = NetExchanger{}

// Exchange sends m to addr over network with miekg/dns's client, within ctx's deadline.
func (NetExchanger) Exchange(ctx context.Context, m *dns.Msg, network, addr string) (*dns.Msg, error) {
	c := &dns.Client{Net: network, UDPSize: ourUDPSize, Timeout: 2 * time.Second}
	resp, _, err := c.ExchangeContext(ctx, m, addr)
	return resp, err
}

// FakeUpstream is an Exchanger answering from a function, for tests and fuzzing.
type FakeUpstream struct {
	Answer func(m *dns.Msg, network, addr string) (*dns.Msg, error)
}

var _ Exchanger = (*FakeUpstream)(nil)

// Exchange calls Answer.
func (f *FakeUpstream) Exchange(_ context.Context, m *dns.Msg, network, addr string) (*dns.Msg, error) {
	return f.Answer(m, network, addr)
}

// ErrBusy is returned when as many forwarded questions as allowed are already waiting.
var ErrBusy = errors.New("too many forwarded questions in flight")

// Forwarder asks the upstream resolvers what the zone does not hold, caching their answers.
type Forwarder struct {
	upstreams []string
	ex        Exchanger
	cache     *cache
	slots     chan struct{} // one per forwarded question in flight
	flights   singleflight.Group
}

// NewForwarder returns a forwarder to upstreams (host:port, tried in order) allowing inflight
// questions at a time and caching up to cacheSize answers.
func NewForwarder(upstreams []string, ex Exchanger, inflight, cacheSize int) *Forwarder {
	return &Forwarder{upstreams: upstreams, ex: ex, cache: newCache(cacheSize, time.Now),
		slots: make(chan struct{}, max(inflight, 1))}
}

// Forward answers r's question from the cache (cached true) or the upstreams. A question is asked
// over UDP first, and again over TCP when the answer is truncated or the client asked over TCP.
// Identical questions in flight together are asked once: a burst of clients asking the name that
// just expired costs one slot and one upstream question.
func (f *Forwarder) Forward(ctx context.Context, r *dns.Msg, tcp bool) (resp *dns.Msg, cached bool, err error) {
	q := r.Question[0]
	do := false
	if opt := r.IsEdns0(); opt != nil {
		do = opt.Do()
	}
	key := cacheKey{name: strings.ToLower(q.Name), qtype: q.Qtype, do: do, cd: r.CheckingDisabled}
	if resp, ok := f.cache.get(key); ok {
		return resp, true, nil
	}
	flight := fmt.Sprintf("%s/%d/%t/%t/%t", key.name, key.qtype, key.do, key.cd, tcp)
	v, err, _ := f.flights.Do(flight, func() (any, error) {
		select {
		case f.slots <- struct{}{}:
			defer func() { <-f.slots }()
		default:
			return nil, ErrBusy // a flood of unanswerable names must not pile up goroutines
		}
		m := new(dns.Msg)
		m.SetQuestion(q.Name, q.Qtype)
		m.RecursionDesired = r.RecursionDesired
		m.CheckingDisabled = r.CheckingDisabled
		m.SetEdns0(ourUDPSize, do)
		resp, err := f.ask(ctx, m, tcp)
		if err != nil {
			return nil, err
		}
		f.cache.put(key, resp)
		return resp, nil
	})
	if err != nil {
		return nil, false, err
	}
	return v.(*dns.Msg).Copy(), false, nil // every caller gets its own copy to stamp its id on
}

// ask tries each upstream in turn until one answers with something other than SERVFAIL.
func (f *Forwarder) ask(ctx context.Context, m *dns.Msg, tcp bool) (*dns.Msg, error) {
	var errs []error
	for _, up := range f.upstreams {
		network := "udp"
		if tcp {
			network = "tcp"
		}
		resp, err := f.ex.Exchange(ctx, m, network, up)
		if err == nil && resp.Truncated && network == "udp" {
			resp, err = f.ex.Exchange(ctx, m, "tcp", up)
		}
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("upstream %s: %w", up, err))
		case resp.Id != m.Id || len(resp.Question) != 1 || resp.Question[0].Qtype != m.Question[0].Qtype ||
			!strings.EqualFold(resp.Question[0].Name, m.Question[0].Name):
			errs = append(errs, fmt.Errorf("upstream %s: reply does not match the question", up))
		case resp.Rcode == dns.RcodeServerFailure:
			errs = append(errs, fmt.Errorf("upstream %s: SERVFAIL", up))
		default:
			return resp, nil
		}
		if ctx.Err() != nil {
			break
		}
	}
	if len(errs) == 0 {
		return nil, errors.New("no upstream resolver configured")
	}
	return nil, errors.Join(errs...)
}
