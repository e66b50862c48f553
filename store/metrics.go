package store

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// storeMetrics are the store's figures: how full it is, and what its maintenance did.
type storeMetrics struct {
	once    sync.Once
	defrags prometheus.Counter
	size    *sizeCollector
}

func (s *Store) initMetrics() {
	s.metrics.once.Do(func() {
		s.metrics.defrags = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_store_defragmentations_total",
			Help: "Defragmentations of the embedded store: each gives the file's free pages back.",
		})
		s.metrics.size = &sizeCollector{s: s,
			total: prometheus.NewDesc("ganglion_store_db_size_bytes", "Size of the store's etcd database file: what etcd's space quota counts.", nil, nil),
			inUse: prometheus.NewDesc("ganglion_store_db_size_in_use_bytes", "Bytes of the database file in use; the rest is free pages, given back by defragmentation.", nil, nil),
			quota: prometheus.NewDesc("ganglion_store_quota_bytes", "The embedded etcd's space quota (--etcd-quota-bytes); 0 for an external cluster, whose quota is its own.", nil, nil),
			alarm: prometheus.NewDesc("ganglion_store_space_alarm", "1 while etcd's NOSPACE alarm is raised: writes that add are refused until it is disarmed.", nil, nil),
		}
	})
}

// Collectors are the store's metrics, for the brain's registry: its size against its quota,
// defragmentations, and objects skipped as unreadable.
func (s *Store) Collectors() []prometheus.Collector {
	s.initMetrics()
	return []prometheus.Collector{s.unreadable.counter(), s.metrics.defrags, s.metrics.size}
}

// sizeCollector reads the store's size once per scrape.
type sizeCollector struct {
	s                          *Store
	total, inUse, quota, alarm *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *sizeCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.total
	ch <- c.inUse
	ch <- c.quota
	ch <- c.alarm
}

// Collect implements prometheus.Collector; an unanswered status read leaves the sizes out
// rather than reporting them as zero.
func (c *sizeCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.quota, prometheus.GaugeValue, float64(c.s.quota))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	sz, err := c.s.size(ctx)
	if err != nil {
		return
	}
	alarm := 0.0
	if sz.alarmed {
		alarm = 1
	}
	ch <- prometheus.MustNewConstMetric(c.total, prometheus.GaugeValue, float64(sz.total))
	ch <- prometheus.MustNewConstMetric(c.inUse, prometheus.GaugeValue, float64(sz.inUse))
	ch <- prometheus.MustNewConstMetric(c.alarm, prometheus.GaugeValue, alarm)
}
