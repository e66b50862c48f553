package ipvs

import (
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// TestLastPlanIsTheLastApplysPlan checks what the agent's /debug/plan shows for IPVS: the plan of
// the last Apply, naming the virtual server and real server it created.
func TestLastPlanIsTheLastApplysPlan(t *testing.T) {
	d := startFake(t, newFakeKernel())
	apply(t, d, dataplane.Change{Upserts: []dataplane.Port{svcPort(1, "10.1.0.1:8080")}})
	got := d.LastPlan()
	if !strings.Contains(got, "10.96.0.2") || !strings.Contains(got, "10.1.0.1") {
		t.Errorf("last plan does not name the real server:\n%s", got)
	}
}
