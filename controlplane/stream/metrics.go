package stream

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the stream's Prometheus metrics.
type Metrics struct {
	Connected   prometheus.Gauge
	Updates     prometheus.Counter
	Bytes       prometheus.Counter
	Resources   *prometheus.CounterVec
	Acks        prometheus.Counter
	Rejections  prometheus.Counter
	Programming prometheus.Histogram
	Snapshots   prometheus.Counter
	Stalled     prometheus.Counter
	// Open counts streams being served, from before their hello: what MaxStreams bounds.
	Open prometheus.Gauge
	// Refused counts streams refused for want of room, by the limit they hit ("total", "node").
	Refused *prometheus.CounterVec
	// HelloTimeouts counts streams cut because their first message did not come in time.
	HelloTimeouts prometheus.Counter
	// SlotsExpired counts snapshot slots let go because the agent had not acknowledged its
	// snapshot within SnapshotSlotHold.
	SlotsExpired prometheus.Counter
	// HealthReplaced counts health results replaced by a newer one of the same endpoint before
	// they were handed on; HealthBacklogFull counts the times a receive loop waited for room.
	HealthReplaced    prometheus.Counter
	HealthBacklogFull prometheus.Counter

	// upserts and removals are Resources' two children, looked up once: every update counts both.
	upserts, removals prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ganglion_agents_connected", Help: "Agents holding a stream to this brain."}),
		Updates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_updates_sent_total", Help: "Updates sent to agents."}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_update_bytes_sent_total", Help: "Bytes of updates sent to agents."}),
		Resources: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ganglion_update_resources_total", Help: "Resources sent to agents, by operation."}, []string{"op"}),
		Acks: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_acks_total", Help: "Updates acknowledged by agents."}),
		Rejections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_rejections_total", Help: "Resources agents failed to apply."}),
		// The same meaning as kube-proxy's network_programming_duration: from the change's trigger
		// (the EndpointSlice's last-change-trigger-time, or when the brain saw it) to applied.
		Programming: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ganglion_network_programming_duration_seconds",
			Help:    "From a change's trigger to an agent's acknowledgement of it.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 18),
		}),
		Snapshots: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_snapshots_total", Help: "Initial differences sent to (re)connecting agents."}),
		Stalled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_streams_stalled_total", Help: "Streams cancelled because a send blocked too long."}),
		Open: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ganglion_streams_open", Help: "Agent streams being served, including those that have not said hello yet."}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ganglion_streams_refused_total", Help: "Agent streams refused because a stream limit was reached, by limit."}, []string{"limit"}),
		HelloTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_stream_hello_timeouts_total", Help: "Agent streams cut because their first message did not arrive in time."}),
		SlotsExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_snapshot_slots_expired_total", Help: "Snapshot slots let go before the agent acknowledged its snapshot."}),
		HealthReplaced: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_health_results_replaced_total", Help: "Health results replaced by a newer result of the same endpoint before they were stored."}),
		HealthBacklogFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_health_backlog_full_total", Help: "Times a stream's receive loop waited because its health backlog was full."}),
	}
	m.upserts, m.removals = m.Resources.WithLabelValues("upsert"), m.Resources.WithLabelValues("remove")
	if reg != nil {
		reg.MustRegister(m.Connected, m.Updates, m.Bytes, m.Resources, m.Acks, m.Rejections, m.Programming, m.Snapshots, m.Stalled,
			m.Open, m.Refused, m.HelloTimeouts, m.SlotsExpired, m.HealthReplaced, m.HealthBacklogFull)
	}
	return m
}
