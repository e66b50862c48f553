package brain_test

import (
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// soakLatencyStep and soakLatencyBuckets bound the soak's latency histogram: 100 µs steps up to
// 60 s (4.8 MB), fixed in size, so that measuring a ten-minute run of ten thousand acknowledgements a
// second does not itself grow the brain's process whose memory is measured.
const (
	soakLatencyStep    = 100 * time.Microsecond
	soakLatencyBuckets = int(time.Minute / soakLatencyStep)
	// soakStallAfter is when an update counts as a stall.
	soakStallAfter = time.Second
)

// latencyRecorder stands in for the hub's programming-duration histogram (change trigger to an
// agent's acknowledgement, the oldest change an update carries): every observation is counted
// exactly, in fine fixed buckets, rather than in the metric's powers of two. Observations before
// start are passed on only: the initial sync is not the soak.
type latencyRecorder struct {
	prometheus.Histogram
	on      atomic.Bool
	buckets []atomic.Int64 // observations by soakLatencyStep; the last holds everything longer
	stalls  atomic.Int64   // observations later than soakStallAfter
	worst   atomic.Int64   // the longest observation, in nanoseconds
}

var _ prometheus.Histogram = (*latencyRecorder)(nil)

func newLatencyRecorder(h prometheus.Histogram) *latencyRecorder {
	return &latencyRecorder{Histogram: h, buckets: make([]atomic.Int64, soakLatencyBuckets+1)}
}

// Observe counts one acknowledged update, v seconds after its oldest change.
func (r *latencyRecorder) Observe(v float64) {
	r.Histogram.Observe(v)
	if !r.on.Load() {
		return
	}
	d := time.Duration(v * float64(time.Second))
	r.buckets[min(int(d/soakLatencyStep), soakLatencyBuckets)].Add(1)
	if d > soakStallAfter {
		r.stalls.Add(1)
	}
	for w := r.worst.Load(); int64(d) > w && !r.worst.CompareAndSwap(w, int64(d)); w = r.worst.Load() {
	}
}

// count is how many updates were observed.
func (r *latencyRecorder) count() int64 {
	var n int64
	for i := range r.buckets {
		n += r.buckets[i].Load()
	}
	return n
}

// percentile is the q-quantile by nearest rank, as the upper edge of its 100 µs bucket (so never
// flattering), in milliseconds.
func (r *latencyRecorder) percentile(q float64) float64 {
	n := r.count()
	rank := max(1, int64(float64(n)*q+0.999999))
	var seen int64
	for i := range r.buckets {
		if seen += r.buckets[i].Load(); seen >= rank {
			return ms(time.Duration(i+1) * soakLatencyStep)
		}
	}
	return ms(time.Duration(r.worst.Load()))
}

// rssSample is one reading of a process's resident memory, settled (settledRSS).
type rssSample struct {
	at  time.Duration // since the churn started
	mib float64
	// classes is where this process's memory is, by the Go runtime's accounting (memClasses),
	// for the brain's samples: what a slope that is not live objects is made of.
	classes string
}

// memClassNames are the runtime's memory classes (runtime/metrics) a soak's samples record:
// live and dead objects, free pages not yet given back, stacks, the runtime's own metadata.
var memClassNames = []string{
	"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes", "/memory/classes/heap/free:bytes",
	"/memory/classes/heap/stacks:bytes", "/memory/classes/os-stacks:bytes", "/memory/classes/metadata/other:bytes",
	"/memory/classes/metadata/mspan/inuse:bytes", "/memory/classes/profiling/buckets:bytes", "/memory/classes/other:bytes",
}

// memClasses renders this process's memory classes in MiB, "objects=.. unused=.. ...".
func memClasses() string {
	samples := make([]metrics.Sample, len(memClassNames))
	for i, n := range memClassNames {
		samples[i].Name = n
	}
	metrics.Read(samples)
	var out []string
	for _, s := range samples {
		if s.Value.Kind() == metrics.KindUint64 {
			name := strings.TrimSuffix(strings.TrimPrefix(s.Name, "/memory/classes/"), ":bytes")
			out = append(out, fmt.Sprintf("%s=%.1f", name, float64(s.Value.Uint64())/(1<<20)))
		}
	}
	return strings.Join(out, " ")
}

// settledRSS returns this process's RSS after a collection that gives every free page back to
// the system (debug.FreeOSMemory): what the process keeps. Raw RSS follows the heap's sawtooth
// between collections (twice the live heap at GOGC=100), swings of hundreds of MiB against a
// floor of 5 MiB an hour.
func settledRSS() (float64, error) {
	debug.FreeOSMemory()
	return vmRSSMiB("self")
}

// vmRSSMiB is a process's resident set ("self" for this one), from /proc/<pid>/status.
func vmRSSMiB(pid string) (float64, error) {
	raw, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		return 0, fmt.Errorf("reading RSS: %w", err)
	}
	for _, line := range bytes.Split(raw, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			if err != nil {
				return 0, fmt.Errorf("reading RSS of %s: %w", pid, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%s/status", pid)
}

// secondHalf fits mib = a + b·t by least squares over the samples from half on and returns b
// in MiB per hour, the samples' mean and how many there were. The first half is warm-up: heaps,
// pools and the set of deleted services reach their working size there.
func secondHalf(samples []rssSample, half time.Duration) (slope, mean float64, n int) {
	var st, sy, stt, sty float64
	for _, s := range samples {
		if s.at < half {
			continue
		}
		t := s.at.Hours()
		st, sy, stt, sty = st+t, sy+s.mib, stt+t*t, sty+t*s.mib
		n++
	}
	den := float64(n)*stt - st*st
	if n < 2 || den == 0 {
		return 0, 0, n
	}
	return (float64(n)*sty - st*sy) / den, sy / float64(n), n
}
