package l2

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the speaker's: how many addresses it answers for, and what it sent, by family, so
// an operator can see a takeover happen (gratuitous) and clients resolving through this node
// (replies).
type metrics struct {
	addresses  prometheus.Gauge
	replies    *prometheus.CounterVec
	gratuitous *prometheus.CounterVec
}

// newMetrics returns the metrics, registered on reg unless reg is nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		addresses: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ganglion_announce_l2_addresses",
			Help: "Addresses this node answers ARP or NDP for.",
		}),
		replies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ganglion_announce_l2_replies_total",
			Help: "ARP replies and solicited neighbour advertisements sent, by family.",
		}, []string{"family"}),
		gratuitous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ganglion_announce_l2_gratuitous_total",
			Help: "Gratuitous ARP and unsolicited neighbour advertisements sent on takeovers, by family.",
		}, []string{"family"}),
	}
	// Both families' series exist from the start, so a rate over them is defined before the first
	// packet.
	for _, fam := range []string{family(false), family(true)} {
		m.replies.WithLabelValues(fam)
		m.gratuitous.WithLabelValues(fam)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.addresses, m.replies, m.gratuitous} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register: %w", err)
		}
	}
	return m, nil
}
