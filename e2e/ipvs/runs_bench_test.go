package ipvs

import (
	"fmt"
	"slices"
	"time"
)

// runs are the times of repeated runs of one measurement, in the order they ran.
type runs []time.Duration

func (r runs) sorted() []time.Duration { return slices.Sorted(slices.Values(r)) }

func (r runs) median() time.Duration { s := r.sorted(); return s[len(s)/2] }
func (r runs) min() time.Duration    { return slices.Min(r) }
func (r runs) max() time.Duration    { return slices.Max(r) }

// ratio compares two measurements taken in pairs (run i of each side close in time): the ratio
// of their medians, and the least and greatest ratio of a pair, which is how far load on the
// machine moved it.
type ratio struct{ med, lo, hi float64 }

func ratioOf(a, b runs) ratio {
	if len(a) != len(b) || len(a) == 0 {
		panic(fmt.Sprintf("ratio of %d runs against %d", len(a), len(b)))
	}
	r := ratio{med: float64(a.median()) / float64(b.median())}
	for i := range a {
		x := float64(a[i]) / float64(b[i])
		if i == 0 || x < r.lo {
			r.lo = x
		}
		if i == 0 || x > r.hi {
			r.hi = x
		}
	}
	return r
}

// keys prints the ratio as BENCH keys: the figure itself keeps its key, the spread adds two.
func (r ratio) keys(key string) string {
	return fmt.Sprintf("%s=%.2f %s_min=%.2f %s_max=%.2f", key, r.med, key, r.lo, key, r.hi)
}

// secKeys prints a side's median and range in seconds.
func (r runs) secKeys(key string) string {
	return fmt.Sprintf("%s=%.2f %s_min=%.2f %s_max=%.2f", key, r.median().Seconds(), key, r.min().Seconds(), key, r.max().Seconds())
}

// usKeys prints a side's median and range in whole microseconds.
func (r runs) usKeys(key string) string {
	return fmt.Sprintf("%s=%d %s_min=%d %s_max=%d", key, r.median().Microseconds(), key, r.min().Microseconds(), key, r.max().Microseconds())
}
