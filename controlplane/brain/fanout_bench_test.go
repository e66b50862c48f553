package brain_test

import (
	"bytes"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ganglion-proxy/ganglion/controlplane/brain"
)

// BenchmarkFanout runs the brain in this process and 1,000 agents in a child process: the real
// agent client over the recording dataplane, decoding and applying every update before it
// acknowledges it, over mutual TLS with a node certificate each, on the fan-out workload
// (fanout_workload_test.go). It measures the initial sync; 1,000 single-endpoint changes one
// after another, each from the change to the acknowledgement of the last agent whose view it
// changes; the bytes that crossed the agents' sockets meanwhile; and the resume of agents that
// were away while 1% of services changed. Its line is printed only once every invariant held.
func BenchmarkFanout(b *testing.B) { benchFanout(b, 1000, workApply) }

// BenchmarkFanout5000 is BenchmarkFanout at Kubernetes' largest supported cluster, 5,000 nodes,
// with agents that keep names and versions only (simheld_test.go): 5,000 real agents decoding
// every update would need more than this machine's memory and cores, and what is measured here
// is the brain: its latency to the last acknowledgement, its memory, the bytes per agent.
func BenchmarkFanout5000(b *testing.B) { benchFanout(b, 5000, workHeld) }

// Environment overrides for development: profiling a 5,000-agent run costs minutes of initial sync.
const (
	// envFanoutAgents replaces the agent count of both fan-out benchmarks.
	envFanoutAgents = "GANGLION_FANOUT_AGENTS"
	// envFanoutProfile names a file for a CPU profile of the brain's process over the changes.
	envFanoutProfile = "GANGLION_FANOUT_PROFILE"
	// envFanoutSamples, when set, prints every change's kind, time and latency on stderr: the
	// slow ones came every 9 s or so, with the brain's collections.
	envFanoutSamples = "GANGLION_FANOUT_SAMPLES"
)

// fanoutFleet sets the workload's agents (envFanoutAgents, or agents) and raises the file limit
// for their connections; it returns their certificates and the workload's restore.
func fanoutFleet(b *testing.B, agents int) (*benchPKI, func()) {
	if s := os.Getenv(envFanoutAgents); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > agents {
			b.Fatalf("%s=%q: want 1 to %d", envFanoutAgents, s, agents)
		}
		agents = n
	}
	restore := withFanAgents(agents)
	raiseFileLimit()
	return newBenchPKI(b, fanoutNodes()...), restore
}

func benchFanout(b *testing.B, agents int, work string) {
	certs, restore := fanoutFleet(b, agents)
	defer restore()
	for b.Loop() {
		br := fanoutBrain(b, certs.brainAuth(b))
		lis := listen(b)
		go br.Serve(lis)

		start := time.Now()
		fleet := startFleet(b, simConfig{Addr: lis.Addr().String(), Agents: fanAgents, PKIDir: certs.Dir, Work: work})
		waitUntil(b, "initial sync of every agent", 30*time.Minute, func() bool { return allSynced(br, fanAgents) })
		initial := time.Since(start)
		snapshotWire := fleet.wire(b)

		stopProfile := cpuProfile(b, os.Getenv(envFanoutProfile))
		ch := measureChanges(b, br, fleet)
		stopProfile()
		rs := measureResume(b, br, fleet, snapshotWire)
		checkAgentsHold(b, br, fleet)
		// An agent that reconnected unasked would have been resyncing, not applying the changes.
		if got, want := snapshots(br), fanAgents+len(rs.away); got != want {
			b.Fatalf("%d snapshots sent, want %d: an agent reconnected during the measurement", got, want)
		}
		fleet.stop()
		br.Stop()

		fmt.Printf("BENCH fanout agents=%d services=%d endpoints=%d local_share=%.2g topology_share=%.2g agent_work=%s agent_client=%s samples=%d"+
			" initial_s=%.1f p50_ms=%.1f p99_ms=%.1f bytes_per_agent=%.0f resume_ratio=%.4f resume_changed_share=%.2g resumed_agents=%d resent_per_agent=%.1f"+
			" brain_rss_mib=%.0f brain_cpu_ms_per_change=%.1f agents_cpu_ms_per_change=%.1f tls=mtls\n",
			fanAgents, fanServices, fanServices*fanEndpoints, fanShare(kindLocal), fanShare(kindTopology), work, agentClient(work), len(ch.lat),
			initial.Seconds(), ch.percentile(0.5), ch.percentile(0.99), ch.wirePerAgent,
			rs.ratio, float64(fanAway)/fanServices, len(rs.away), rs.resentPerAgent,
			vmHWMMiB(), ms(ch.brainCPU)/float64(len(ch.lat)), ms(ch.agentsCPU)/float64(len(ch.lat)))
	}
}

// checkAgentsHold checks that every agent holds what the brain wants it to hold, name for name
// and version for version, and that its dataplane programs exactly that.
func checkAgentsHold(b *testing.B, br *brain.Brain, fleet *simFleet) {
	b.Helper()
	lines := fleet.command(b, "state")
	if len(lines) != fanAgents {
		b.Fatalf("%d agents reported their state, want %d", len(lines), fanAgents)
	}
	for _, l := range lines {
		if len(l) != 5 || l[0] != "state" {
			b.Fatalf("simulated agents: bad state line %q", l)
		}
		node := l[1]
		resources, sum := stateSum(br, node)
		if l[2] != strconv.Itoa(resources) || l[3] != strconv.FormatUint(sum, 10) {
			b.Fatalf("%s holds %s resources (digest %s); the brain wants %d (digest %d)", node, l[2], l[3], resources, sum)
		}
		if l[4] != "ok" && l[4] != noDataplane {
			b.Fatalf("%s: dataplane: %s", node, l[4])
		}
	}
}

// allSynced says whether n agents hold a stream to br with their whole initial difference
// acknowledged and nothing pending.
func allSynced(br *brain.Brain, n int) bool {
	c := 0
	for _, s := range br.Hub.Sessions() {
		if s.Synced && s.Pending == 0 {
			c++
		}
	}
	return c == n
}

func count(c prometheus.Collector) int { return int(testutil.ToFloat64(c)) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func vmHWMMiB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

// waitUntil polls cond every 20 ms: the states it waits for (sessions synced or gone) are read
// under the hub's lock from a thousand sessions, in the brain's process, and none is timed to the
// millisecond.
func waitUntil(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// percentile is the q-quantile of the latencies by nearest rank, in milliseconds.
func (r changeRun) percentile(q float64) float64 {
	lat := slices.Sorted(slices.Values(r.lat))
	i := max(0, int(float64(len(lat))*q+0.999999)-1)
	return ms(lat[i])
}

// cpuProfile profiles this process's CPU into path until the returned func is called, which also
// writes a heap profile to path.heap; an empty path profiles nothing.
func cpuProfile(b *testing.B, path string) func() {
	b.Helper()
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		h, err := os.Create(path + ".heap")
		if err != nil {
			b.Fatal(err)
		}
		defer h.Close()
		if err := pprof.Lookup("heap").WriteTo(h, 0); err != nil {
			b.Fatal(err)
		}
	}
}
