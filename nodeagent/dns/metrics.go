package dns

import (
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
)

// Where an answer came from: the zone, the forwarder's cache, an upstream, or nowhere (refused,
// malformed, or the forward failed).
const (
	sourceZone     = "zone"
	sourceCache    = "cache"
	sourceUpstream = "upstream"
	sourceNone     = "none"
)

// Metrics counts the DNS server's answers, for the agent's /metrics.
type Metrics struct {
	answers *prometheus.CounterVec
	busy    prometheus.Counter
}

// NewMetrics returns the DNS metrics registered on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		answers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ganglion_dns_answers_total",
			Help: "DNS answers by where they came from (zone, cache, upstream, none) and response code.",
		}, []string{"source", "rcode"}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_dns_forward_busy_total",
			Help: "Questions answered SERVFAIL because as many forwarded questions as allowed were in flight.",
		}),
	}
	reg.MustRegister(m.answers, m.busy)
	return m
}

// observe counts one answer; m may be nil.
func (m *Metrics) observe(source string, rcode int) {
	if m == nil {
		return
	}
	name, ok := dns.RcodeToString[rcode]
	if !ok {
		name = "other" // an upstream's odd code must not grow the label set
	}
	m.answers.WithLabelValues(source, name).Inc()
}

// observeBusy counts a question refused for want of a forwarding slot; m may be nil.
func (m *Metrics) observeBusy() {
	if m != nil {
		m.busy.Inc()
	}
}
