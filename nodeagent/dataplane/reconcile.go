package dataplane

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Results of a drift-repair pass (Dataplane.Reconcile), the values of the result label.
const (
	// ReconcileClean: the kernel held what was applied; nothing was written.
	ReconcileClean = "clean"
	// ReconcileRepaired: objects changed from outside were put back.
	ReconcileRepaired = "repaired"
	// ReconcileError: the pass failed to read or to repair.
	ReconcileError = "error"
	// ReconcileDeferred: changes kept arriving while the pass wanted to repair; it gave way to
	// them and the next pass checks again.
	ReconcileDeferred = "deferred"
)

// ReconcileReporter is a backend that reports its drift-repair passes: register
// ReconcileMetrics on the agent's registry.
type ReconcileReporter interface {
	ReconcileMetrics() *ReconcileMetrics
}

// ReconcileStats are the totals of a backend's drift-repair passes, for tests and debugging.
type ReconcileStats struct {
	// Passes counts passes by result (ReconcileClean, ...).
	Passes map[string]int
	// Repairs counts the kernel objects passes wrote back (each set element counts).
	Repairs int
	// Dumps counts passes that read the backend's tables back in full: the expensive part.
	Dumps int
	// Seconds is the time all passes took.
	Seconds float64
}

// ReconcileMetrics are the drift-repair metrics of one backend. It is a prometheus.Collector:
// the agent registers it on its registry; a backend nobody registers still counts, for Stats.
type ReconcileMetrics struct {
	seconds prometheus.Histogram
	passes  *prometheus.CounterVec
	repairs prometheus.Counter
	dumps   prometheus.Counter

	mu    sync.Mutex
	stats ReconcileStats
}

var _ prometheus.Collector = (*ReconcileMetrics)(nil)

// NewReconcileMetrics returns unregistered drift-repair metrics.
func NewReconcileMetrics() *ReconcileMetrics {
	m := &ReconcileMetrics{
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ganglion_dataplane_reconcile_seconds",
			Help:    "How long one drift-repair pass of the dataplane took.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 4, 10)}),
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ganglion_dataplane_reconcile_total",
			Help: "Drift-repair passes by result: clean, repaired, error, deferred (gave way to changes).",
		}, []string{"result"}),
		repairs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_dataplane_reconcile_repairs_total",
			Help: "Kernel objects drift repair wrote back (chains, rules, sets; each set element counts)."}),
		dumps: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_dataplane_reconcile_dumps_total",
			Help: "Drift-repair passes that read the dataplane's tables back in full (the kernel said something changed)."}),
		stats: ReconcileStats{Passes: map[string]int{}},
	}
	for _, r := range []string{ReconcileClean, ReconcileRepaired, ReconcileError, ReconcileDeferred} {
		m.passes.WithLabelValues(r) // present at zero, so rates work from the first scrape
	}
	return m
}

// Observe records one pass: how long it took, its result, the objects it repaired and whether
// it read the tables back in full. m may be nil.
func (m *ReconcileMetrics) Observe(took time.Duration, result string, repairs int, dumped bool) {
	if m == nil {
		return
	}
	m.seconds.Observe(took.Seconds())
	m.passes.WithLabelValues(result).Inc()
	m.repairs.Add(float64(repairs))
	m.mu.Lock()
	defer m.mu.Unlock()
	m.stats.Passes[result]++
	m.stats.Repairs += repairs
	m.stats.Seconds += took.Seconds()
	if dumped {
		m.dumps.Inc()
		m.stats.Dumps++
	}
}

// Stats returns the totals so far.
func (m *ReconcileMetrics) Stats() ReconcileStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Passes = make(map[string]int, len(m.stats.Passes))
	for k, v := range m.stats.Passes {
		s.Passes[k] = v
	}
	return s
}

// Describe implements prometheus.Collector.
func (m *ReconcileMetrics) Describe(ch chan<- *prometheus.Desc) {
	m.seconds.Describe(ch)
	m.passes.Describe(ch)
	m.repairs.Describe(ch)
	m.dumps.Describe(ch)
}

// Collect implements prometheus.Collector.
func (m *ReconcileMetrics) Collect(ch chan<- prometheus.Metric) {
	m.seconds.Collect(ch)
	m.passes.Collect(ch)
	m.repairs.Collect(ch)
	m.dumps.Collect(ch)
}
