// Package benchstat summarises repeated benchmark runs for BENCH lines: one run proves little on
// a shared two-core machine, where others' builds come and go within seconds, so every figure is
// a median with its spread beside it.
package benchstat

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Runs are the times of repeated runs of one measurement, in the order they ran.
type Runs []time.Duration

// Median is the middle run (the upper one of an even count).
func (r Runs) Median() time.Duration {
	s := slices.Sorted(slices.Values(r))
	return s[len(s)/2]
}

// Min is the fastest run.
func (r Runs) Min() time.Duration { return slices.Min(r) }

// Max is the slowest run.
func (r Runs) Max() time.Duration { return slices.Max(r) }

// Ratio compares two measurements taken in pairs (run i of each side close in time): the ratio
// of their medians; the least and greatest ratio of a pair, which is how far load on the machine
// moved it; and the 10th and 90th percentile of the pairs' ratios, the spread without its
// outliers.
type Ratio struct{ Med, Lo, Hi, P10, P90 float64 }

// RatioOf is a against b; both must hold the same number of runs.
func RatioOf(a, b Runs) Ratio {
	if len(a) != len(b) || len(a) == 0 {
		panic(fmt.Sprintf("ratio of %d runs against %d", len(a), len(b)))
	}
	pairs := make([]float64, len(a))
	for i := range a {
		pairs[i] = float64(a[i]) / float64(b[i])
	}
	slices.Sort(pairs)
	return Ratio{Med: float64(a.Median()) / float64(b.Median()), Lo: pairs[0], Hi: pairs[len(pairs)-1],
		P10: percentile(pairs, 0.10), P90: percentile(pairs, 0.90)}
}

// percentile is the nearest-rank percentile q of sorted values.
func percentile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// Keys prints the ratio as BENCH keys: the figure keeps its key, the spread adds four.
func (r Ratio) Keys(key string) string {
	return fmt.Sprintf("%s=%.2f %s_min=%.2f %s_max=%.2f %s_p10=%.2f %s_p90=%.2f", key, r.Med, key, r.Lo, key, r.Hi, key, r.P10, key, r.P90)
}

// keys prints the median and range in unit, with digits after the point.
func (r Runs) keys(key string, unit time.Duration, digits int) string {
	f := func(d time.Duration) float64 { return float64(d) / float64(unit) }
	return fmt.Sprintf("%s=%.*f %s_min=%.*f %s_max=%.*f", key, digits, f(r.Median()),
		key, digits, f(r.Min()), key, digits, f(r.Max()))
}

// SecKeys prints the median and range in seconds.
func (r Runs) SecKeys(key string) string { return r.keys(key, time.Second, 2) }

// MsKeys prints the median and range in milliseconds.
func (r Runs) MsKeys(key string, digits int) string { return r.keys(key, time.Millisecond, digits) }

// UsKeys prints the median and range in whole microseconds.
func (r Runs) UsKeys(key string) string { return r.keys(key, time.Microsecond, 0) }
