// Package node runs the agent's node-local servers: /healthz and /livez with /proxyMode on the
// health port (10256), kube-proxy-named metrics on the metrics port (10249), and the
// healthCheckNodePort servers of externalTrafficPolicy Local services.
package node

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// Status is what the health endpoints need to know of the agent.
type Status struct {
	// Synced is true once a complete state has been applied.
	Synced bool
	// LastSync is when an update was last applied.
	LastSync time.Time
	// Connected is true while a brain stream is up.
	Connected bool
	// DisconnectedSince is when the last stream ended; zero while connected.
	DisconnectedSince time.Time
}

// Health decides the agent's health from its status. Rules stay in place while no brain is
// reachable, so a short outage keeps the node healthy; past StaleAfter the node's rules may be
// stale and it reports so, as kube-proxy does when its updates are stale.
type Health struct {
	Status     func() Status
	StaleAfter time.Duration
	Mode       string // the dataplane backend, for /proxyMode
}

// Healthy reports whether the agent is healthy now.
func (h *Health) Healthy() bool {
	st := h.Status()
	return st.Synced && (st.Connected || time.Since(st.DisconnectedSince) < h.StaleAfter)
}

// Handler serves /healthz, /livez and /proxyMode.
func (h *Health) Handler() http.Handler {
	mux := http.NewServeMux()
	reply := func(w http.ResponseWriter, _ *http.Request) {
		st := h.Status()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if h.Healthy() {
			w.WriteHeader(http.StatusOK)
		} else {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(map[string]any{
			"lastUpdated": st.LastSync.UTC().Format(time.RFC3339Nano),
			"currentTime": time.Now().UTC().Format(time.RFC3339Nano),
			"synced":      st.Synced,
			"connected":   st.Connected,
		})
	}
	mux.HandleFunc("/healthz", reply)
	mux.HandleFunc("/livez", reply)
	mux.HandleFunc("/proxyMode", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(h.Mode))
	})
	return mux
}

// Metrics are the agent's metrics, named like kube-proxy's where the meaning is the same so that
// existing dashboards work.
type Metrics struct {
	Registry     *prometheus.Registry
	syncDuration prometheus.Histogram
	lastSync     prometheus.Gauge
	syncFailures prometheus.Counter
	portsApplied prometheus.Counter
	portsRemoved prometheus.Counter
}

// NewMetrics registers the agent's metrics.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		syncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kubeproxy_sync_proxy_rules_duration_seconds", Help: "How long applying one update to the dataplane took.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeproxy_sync_proxy_rules_last_timestamp_seconds", Help: "When an update was last applied."}),
		syncFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_agent_apply_failures_total", Help: "Ports the dataplane failed to apply."}),
		portsApplied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_agent_ports_applied_total", Help: "Ports created or replaced in the dataplane."}),
		portsRemoved: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_agent_ports_removed_total", Help: "Ports removed from the dataplane."}),
	}
	m.Registry.MustRegister(m.syncDuration, m.lastSync, m.syncFailures, m.portsApplied, m.portsRemoved,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Observe records one applied change.
func (m *Metrics) Observe(c dataplane.Change, took time.Duration, failed map[string]error) {
	m.syncDuration.Observe(took.Seconds())
	m.lastSync.SetToCurrentTime()
	m.syncFailures.Add(float64(len(failed)))
	m.portsApplied.Add(float64(len(c.Upserts)))
	m.portsRemoved.Add(float64(len(c.Removals)))
}

// Handler serves /metrics.
func (m *Metrics) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	return mux
}
