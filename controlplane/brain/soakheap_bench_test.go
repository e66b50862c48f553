package brain_test

import (
	"fmt"
	"runtime"
	"runtime/metrics"
	"testing"
	"time"
)

// soakHeapChanges is two hours of the soak's churn at soakRate.
const soakHeapChanges = 2 * 3600 * soakRate

// BenchmarkSoakHeap runs two hours' worth of the soak's churn through the brain with no agent
// connected, as fast as it goes, and reads the live heap after a collection every tenth: the
// engine's and the hub's memory without the streams, whose in-flight state moves the soak's RSS
// by megabytes and leaves its 10-minute slope uncertain by tens of MiB/h. Forced collections are
// free here, as no latency is measured. The slope is over the second half, per hour of churn.
func BenchmarkSoakHeap(b *testing.B) {
	certs := newBenchPKI(b, fanoutNodes()[:1]...)
	for b.Loop() {
		churn := newSoakChurn(fanoutBrain(b, certs.brainAuth(b)))
		live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
		var samples []rssSample
		for k := 0; k <= soakHeapChanges; k++ {
			if k%(soakHeapChanges/10) == 0 {
				runtime.GC()
				metrics.Read(live)
				at := time.Duration(k) * time.Second / soakRate // on the churn's schedule
				samples = append(samples, rssSample{at: at, mib: float64(live[0].Value.Uint64()) / (1 << 20)})
			}
			churn.change(k)
		}
		f := secondHalf(samples, samples[len(samples)-1].at/2)
		fmt.Printf("BENCH soak heap changes=%d churn_hours=2 live_mib_first=%.2f live_mib_last=%.2f live_slope_mib_per_h=%.3f samples=%d\n",
			soakHeapChanges, samples[0].mib, samples[len(samples)-1].mib, f.slope, len(samples))
		if f.slope > soakMaxSlope {
			b.Errorf("the brain's live heap grows %.3f MiB per hour of churn > %.0f", f.slope, soakMaxSlope)
		}
	}
}
