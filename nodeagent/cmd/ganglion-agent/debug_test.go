package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/node"
)

// planning is a dataplane that reports a fixed last plan.
type planning struct{ *dataplane.Recording }

func (planning) LastPlan() string { return "add element ip ganglion fe-ep { 10.96.0.10 }\n" }

// TestDebugPlanServesTheLastPlan checks /debug/plan beside /metrics: the backend's last plan when
// it keeps one, nothing (404) when it does not.
func TestDebugPlanServesTheLastPlan(t *testing.T) {
	get := func(h http.Handler, path string) (int, string) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		b, _ := io.ReadAll(rec.Result().Body)
		return rec.Code, string(b)
	}
	m := node.NewMetrics()
	if code, body := get(metricsMux(m, planning{dataplane.NewRecording()}), "/debug/plan"); code != 200 || body != "add element ip ganglion fe-ep { 10.96.0.10 }\n" {
		t.Errorf("/debug/plan: %d %q", code, body)
	}
	if code, _ := get(metricsMux(node.NewMetrics(), dataplane.NewRecording()), "/debug/plan"); code != http.StatusNotFound {
		t.Errorf("/debug/plan of a backend without plans: %d, want 404", code)
	}
	if code, _ := get(metricsMux(node.NewMetrics(), dataplane.NewRecording()), "/metrics"); code != 200 {
		t.Errorf("/metrics: %d", code)
	}
}
