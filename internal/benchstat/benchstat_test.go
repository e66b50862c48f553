package benchstat

import (
	"testing"
	"time"
)

func TestRatioOfPairsAndItsSpread(t *testing.T) {
	var a, b Runs
	// Ten pairs whose ratios are 1.0, 1.1, ... 1.9, in shuffled order.
	for _, k := range []int{3, 9, 0, 5, 1, 8, 2, 7, 4, 6} {
		a = append(a, time.Duration(100+10*k)*time.Millisecond)
		b = append(b, 100*time.Millisecond)
	}
	r := RatioOf(a, b)
	if r.Lo != 1.0 || r.Hi != 1.9 || r.P10 != 1.0 || r.P90 != 1.8 {
		t.Errorf("spread lo %.2f hi %.2f p10 %.2f p90 %.2f, want 1.0 1.9 1.0 1.8", r.Lo, r.Hi, r.P10, r.P90)
	}
	if got, want := r.Keys("apply_ratio"), "apply_ratio=1.50 apply_ratio_min=1.00 apply_ratio_max=1.90 apply_ratio_p10=1.00 apply_ratio_p90=1.80"; got != want {
		t.Errorf("keys %q, want %q", got, want)
	}
}
