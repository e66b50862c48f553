package chaos

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
)

// Fault is one disruption: Inject runs while the workload runs and returns when the fault ends
// (the killed process restarted, the paused one resumed); what it observed meanwhile goes into
// the result's notes and failures.
type Fault struct {
	Name   string
	Inject func(t testing.TB, h *Harness, r *Result)
}

// Result is what one fault's run showed.
type Result struct {
	Fault        string
	Ops          int
	Unknown      int
	AckedLost    int
	Linearizable porcupine.CheckResult
	ConvergedS   float64
	// Notes are measurements worth printing (key=value); Failures are checks that failed.
	Notes    []string
	Failures []string
}

// Notef adds a key=value measurement to the result's line.
func (r *Result) Notef(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Failf records a failed check; the run goes on so that every fault reports.
func (r *Result) Failf(format string, args ...any) {
	r.Failures = append(r.Failures, fmt.Sprintf(format, args...))
}

// Line is the CHAOS report line.
func (r *Result) Line() string {
	lin := "unknown"
	switch r.Linearizable {
	case porcupine.Ok:
		lin = "true"
	case porcupine.Illegal:
		lin = "false"
	}
	s := fmt.Sprintf("CHAOS fault=%s ops=%d acked_lost=%d linearizable=%s converged_s=%.1f unknown_outcome=%d",
		r.Fault, r.Ops, r.AckedLost, lin, r.ConvergedS, r.Unknown)
	if len(r.Notes) > 0 {
		s += " " + strings.Join(r.Notes, " ")
	}
	return s
}

// Run runs f under the workload of clients and checks the history and convergence. The
// workload stops when the fault ends; convergence is timed from then until every agent holds
// what the admin API finally reads.
func Run(t testing.TB, h *Harness, w *Workload, clients int, warmup time.Duration, f Fault) *Result {
	t.Helper()
	r := &Result{Fault: f.Name}
	initial, err := w.Read(0, time.Minute)
	if err != nil {
		t.Fatalf("%s: initial read: %v", f.Name, err)
	}
	from := w.History.Len()
	began := time.Now()
	var asked int64
	if h.Traffic != nil {
		asked = h.Traffic.Mark()
	}
	w.Start(clients)
	time.Sleep(warmup)
	f.Inject(t, h, r)
	end := time.Now()
	w.Stop()
	var final State
	for i := range h.Brains() {
		// Both brains' reads enter the history: each must agree with the model.
		if final, err = w.Read(i, 2*time.Minute); err != nil {
			r.Failf("no read after the fault: %v", err)
		}
	}
	r.Notef("final_services=%d", len(final))
	converged := waitConverged(h, final, 2*time.Minute)
	r.ConvergedS = time.Since(end).Seconds()
	if !converged {
		r.Failf("agents did not converge on %v within 2m: they hold %v", final, h.Held(t.Context()))
	}
	if h.Traffic != nil {
		failed := h.Traffic.FailedBetween(began, time.Now())
		r.Notef("traffic_requests=%d traffic_failed=%d", h.Traffic.Mark()-asked, failed)
		if failed > 0 {
			r.Failf("%d requests to the traffic service's VIP failed", failed)
		}
	}
	r.checkHistory(initial, w.History.Ops()[from:], final)
	return r
}

// checkHistory checks a fault's operations, from initial to final: linearizable, nothing
// acknowledged lost; and measures them.
func (r *Result) checkHistory(initial State, ops []Op, final State) {
	r.Ops = len(ops)
	var slowest time.Duration
	hung := 0
	for _, op := range ops {
		if op.Outcome == Unknown {
			r.Unknown++
		}
		if op.Code == codes.DeadlineExceeded {
			hung++
		}
		slowest = max(slowest, op.End.Sub(op.Start))
	}
	// Calls that ran into CallTimeout: measured, not a check here (quorum loss checks its own).
	r.Notef("slowest_call_s=%.2f hung_calls=%d", slowest.Seconds(), hung)
	var late bool
	r.Linearizable, late = Check(initial, ops, 2*time.Minute)
	if late {
		r.Notef("late_commits=true")
	}
	if r.Linearizable != porcupine.Ok {
		r.Failf("history not linearizable (%s): %s", r.Linearizable, summary(ops))
	}
	var lost []string
	if r.AckedLost, lost = AckedLost(ops, final); r.AckedLost > 0 {
		r.Failf("acknowledged writes lost: %s", strings.Join(lost, "; "))
	}
}

// waitConverged waits until every agent acknowledged want and, in a lab, traffic reaches each
// of its services.
func waitConverged(h *Harness, want State, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for !h.Converged(want) || !h.Serves(want) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
	return true
}

// summary counts operations by call and result, for a failure message.
func summary(ops []Op) string {
	n := map[string]int{}
	for _, op := range ops {
		n[op.Kind.String()+"/"+op.Code.String()]++
	}
	return fmt.Sprint(n)
}

// Report prints r's line and fails t for each failed check.
func Report(t testing.TB, r *Result) {
	t.Helper()
	fmt.Println(r.Line())
	for _, f := range r.Failures {
		t.Errorf("fault %s: %s", r.Fault, f)
	}
}
