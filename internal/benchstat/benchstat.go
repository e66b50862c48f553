// Package benchstat summarises repeated benchmark runs for BENCH lines: one run proves little on
// a shared two-core machine, where others' builds come and go within seconds, so every figure is
// a median with its spread beside it.
package benchstat

import (
	"fmt"
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
// of their medians, and the least and greatest ratio of a pair, which is how far load on the
// machine moved it.
type Ratio struct{ Med, Lo, Hi float64 }

// RatioOf is a against b; both must hold the same number of runs.
func RatioOf(a, b Runs) Ratio {
	if len(a) != len(b) || len(a) == 0 {
		panic(fmt.Sprintf("ratio of %d runs against %d", len(a), len(b)))
	}
	r := Ratio{Med: float64(a.Median()) / float64(b.Median())}
	for i := range a {
		x := float64(a[i]) / float64(b[i])
		if i == 0 || x < r.Lo {
			r.Lo = x
		}
		if i == 0 || x > r.Hi {
			r.Hi = x
		}
	}
	return r
}

// Keys prints the ratio as BENCH keys: the figure keeps its key, the spread adds two.
func (r Ratio) Keys(key string) string {
	return fmt.Sprintf("%s=%.2f %s_min=%.2f %s_max=%.2f", key, r.Med, key, r.Lo, key, r.Hi)
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
