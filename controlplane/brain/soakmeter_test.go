package brain_test

import (
	"bytes"
	"fmt"
	"math"
	"os"
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
	// start and seconds are the timeline: by second of the run, the updates acknowledged, those
	// later than soakMaxP99 and the longest, to tell steady saturation from a pause.
	start   atomic.Int64 // unix nanoseconds
	seconds []secondTally
}

// secondTally is one second of the timeline.
type secondTally struct{ acked, late, worst atomic.Int64 }

// soakTimelineSeconds bounds the timeline; later observations are counted in the histogram only.
const soakTimelineSeconds = 3 * 3600

var _ prometheus.Histogram = (*latencyRecorder)(nil)

func newLatencyRecorder(h prometheus.Histogram) *latencyRecorder {
	return &latencyRecorder{Histogram: h, buckets: make([]atomic.Int64, soakLatencyBuckets+1), seconds: make([]secondTally, soakTimelineSeconds)}
}

// begin starts timing.
func (r *latencyRecorder) begin() {
	r.start.Store(time.Now().UnixNano())
	r.on.Store(true)
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
	raise(&r.worst, int64(d))
	if sec := (time.Now().UnixNano() - r.start.Load()) / int64(time.Second); sec >= 0 && sec < int64(len(r.seconds)) {
		t := &r.seconds[sec]
		t.acked.Add(1)
		if ms(d) > soakMaxP99 {
			t.late.Add(1)
		}
		raise(&t.worst, int64(d))
	}
}

// raise sets v to n when n is larger.
func raise(v *atomic.Int64, n int64) {
	for w := v.Load(); n > w && !v.CompareAndSwap(w, n); w = v.Load() {
	}
}

// timeline renders the seconds that saw an acknowledgement: second, updates, later than the p99
// floor, the longest in ms; a first line gives the start in Unix seconds, to line the timeline
// up with other records (GODEBUG=gctrace=1 through a timestamping pipe, say).
func (r *latencyRecorder) timeline() string {
	var out strings.Builder
	fmt.Fprintf(&out, "# start %.3f\n", float64(r.start.Load())/1e9)
	for i := range r.seconds {
		if t := &r.seconds[i]; t.acked.Load() > 0 {
			fmt.Fprintf(&out, "%d\t%d\t%d\t%.1f\n", i, t.acked.Load(), t.late.Load(), ms(time.Duration(t.worst.Load())))
		}
	}
	return out.String()
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

// settledRSS estimates what this process keeps: its RSS less every heap byte that holds no
// live object, so the live heap (as the last collection found it, /gc/heap/live) plus everything
// outside the heap (stacks, the runtime's metadata). What it leaves out is the heap's slack: pages
// held free (/memory/classes/heap/free), free slots in used spans (heap/unused) and objects
// allocated since the last collection beyond those found live (heap/objects less /gc/heap/live).
// That slack follows the collector's cycle, not what the process holds: leaving out only the
// free pages and new objects swung the brain's estimate by 30 MiB with heap/unused, and the
// agents' process's by 300 MiB between its collections (the slots of dead objects refilled).
// Nothing is forced: debug.FreeOSMemory took the agents' process 4.5 to 5.9 s and the brain's 1
// to 1.8 s a sample, and a forced collection of the agents' process alone 1 to 5 s (840 MB live),
// each a collapse of the whole fleet's latency (latency.tsv: 911 updates later than a second in
// 10 minutes, each second of them beside a sample).
func settledRSS() (float64, error) {
	m := []metrics.Sample{{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(m)
	rss, err := vmRSSMiB("self")
	if err != nil {
		return 0, err
	}
	free, unused, objects, live := m[0].Value.Uint64(), m[1].Value.Uint64(), m[2].Value.Uint64(), m[3].Value.Uint64()
	return rss - float64(free+unused+objects-min(objects, live))/(1<<20), nil
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

// rssFit is a least-squares line through the second half's samples.
type rssFit struct {
	slope, se float64 // MiB per hour, and the slope's standard error
	mean      float64 // MiB
	n         int     // samples
}

// secondHalf fits mib = a + b·t by least squares over the samples from half on. The first half
// is warm-up: heaps, pools and the set of deleted services reach their working size there. The
// standard error says what the slope can tell: the brain's live heap moves by megabytes with what
// its streams hold at each collection, so ten minutes cannot resolve a few MiB an hour.
func secondHalf(samples []rssSample, half time.Duration) rssFit {
	var f rssFit
	var st, sy, stt, sty, syy float64
	for _, s := range samples {
		if s.at < half {
			continue
		}
		t := s.at.Hours()
		st, sy, stt, sty, syy = st+t, sy+s.mib, stt+t*t, sty+t*s.mib, syy+s.mib*s.mib
		f.n++
	}
	n := float64(f.n)
	sxx, sxy, s2 := stt-st*st/n, sty-st*sy/n, syy-sy*sy/n
	if f.n < 3 || sxx <= 0 {
		return f
	}
	f.slope, f.mean = sxy/sxx, sy/n
	f.se = math.Sqrt(max(0, s2-f.slope*sxy) / (n - 2) / sxx)
	return f
}
