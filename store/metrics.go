package store

import "github.com/prometheus/client_golang/prometheus"

// Collectors are the store's metrics, for the brain's registry: objects skipped as unreadable.
func (s *Store) Collectors() []prometheus.Collector {
	return []prometheus.Collector{s.unreadable.counter()}
}
