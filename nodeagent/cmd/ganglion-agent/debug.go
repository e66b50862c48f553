package main

import (
	"io"
	"net/http"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/node"
)

// metricsMux serves /metrics and, when the backend keeps its plans, /debug/plan: the exact
// operations of the last change the kernel accepted. Both stay on the metrics listener, which is
// loopback by default: a plan shows every address the node serves.
func metricsMux(m *node.Metrics, backend dataplane.Dataplane) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	if pr, ok := backend.(dataplane.PlanReporter); ok {
		mux.HandleFunc("/debug/plan", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			_, _ = io.WriteString(w, pr.LastPlan())
		})
	}
	return mux
}
