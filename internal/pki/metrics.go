package pki

import (
	"github.com/prometheus/client_golang/prometheus"
)

// ExpiryCollector exports when each watched certificate stops being valid, read afresh at every
// scrape so that a rotation shows at once: alert on ganglion_certificate_expiry_timestamp_seconds
// - time() < 7 days.
type ExpiryCollector struct {
	pairs []*KeyPair
	pools []*Pool
}

var expiryDesc = prometheus.NewDesc("ganglion_certificate_expiry_timestamp_seconds",
	"When a certificate in use stops being valid (Unix seconds), by file.", []string{"file"}, nil)

// NewExpiryCollector watches the given key pairs and CA bundles (nil ones are skipped).
func NewExpiryCollector(pairs []*KeyPair, pools []*Pool) *ExpiryCollector {
	c := &ExpiryCollector{}
	for _, p := range pairs {
		if p != nil {
			c.pairs = append(c.pairs, p)
		}
	}
	for _, p := range pools {
		if p != nil {
			c.pools = append(c.pools, p)
		}
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *ExpiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

// Collect implements prometheus.Collector.
func (c *ExpiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.pairs {
		if leaf := p.Leaf(); leaf != nil {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(leaf.NotAfter.Unix()), p.CertFile())
		}
	}
	for _, p := range c.pools {
		// A bundle expires, for its users, when its first certificate does.
		var first float64
		for _, cert := range p.Certificates() {
			if t := float64(cert.NotAfter.Unix()); first == 0 || t < first {
				first = t
			}
		}
		if first != 0 {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, first, p.File())
		}
	}
}

var _ prometheus.Collector = (*ExpiryCollector)(nil)
