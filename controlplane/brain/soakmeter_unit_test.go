package brain_test

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestLatencyRecorderCountsAndTimeline holds the soak's latency figures to what was observed:
// nothing before begin, percentiles as upper bucket edges, stalls past a second, and the timeline's
// second with its updates, those past the p99 floor and the slowest.
func TestLatencyRecorderCountsAndTimeline(t *testing.T) {
	r := newLatencyRecorder(prometheus.NewHistogram(prometheus.HistogramOpts{Name: "test"}))
	r.Observe(5) // before begin: the initial sync, not the soak
	r.begin()
	for _, v := range []float64{0.125, 0.375, 1.5} { // exact in binary
		r.Observe(v)
	}
	if n, stalls := r.count(), r.stalls.Load(); n != 3 || stalls != 1 {
		t.Fatalf("count %d, stalls %d; want 3 and 1", n, stalls)
	}
	if p50, p99 := r.percentile(0.5), r.percentile(0.99); p50 != 375.1 || p99 != 1500.1 {
		t.Errorf("p50 %.1f ms, p99 %.1f ms; want 375.1 and 1500.1 (upper bucket edges)", p50, p99)
	}
	lines := strings.Split(strings.TrimSpace(r.timeline()), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "# start ") || lines[1] != "0\t3\t2\t1500.0" {
		t.Errorf("timeline %q; want the start, then second 0 with 3 updates, 2 past 250 ms, the slowest 1500 ms", lines)
	}
}

// TestSecondHalfFitsSlopeAndError checks the soak's memory slope against a fit done by hand:
// samples before half are warm-up and left out, and the standard error is the residuals'.
func TestSecondHalfFitsSlopeAndError(t *testing.T) {
	hours := func(h float64) time.Duration { return time.Duration(h * float64(time.Hour)) }
	samples := []rssSample{{at: hours(0.5), mib: 500}} // warm-up: would dominate the fit
	for i, mib := range []float64{0, 1, 1, 2} {
		samples = append(samples, rssSample{at: hours(1 + float64(i)), mib: mib})
	}
	f := secondHalf(samples, hours(1))
	// t = 0..3 h from half: slope 3/5, residuals -0.1, 0.3, -0.3, 0.1, se sqrt(0.2/2/5).
	if f.n != 4 || math.Abs(f.slope-0.6) > 1e-9 || math.Abs(f.se-math.Sqrt(0.02)) > 1e-9 || math.Abs(f.mean-1) > 1e-9 {
		t.Errorf("fit %+v; want n 4, slope 0.6 MiB/h, se 0.1414, mean 1", f)
	}
	if f := secondHalf(samples[:3], hours(1)); f.slope != 0 || f.se != 0 {
		t.Errorf("fit of two samples %+v; want no slope (too few to tell its error)", f)
	}
}
