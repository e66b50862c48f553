package brain_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
)

// The fan-out workload: 1,000 agents, 10,000 services, 100,000 endpoints.
const (
	fanAgents    = 1000
	fanServices  = 10000
	fanEndpoints = 10 // per service
	fanChanges   = 100
)

// fanoutBrain is a brain holding the fan-out workload, synced, with the given authentication: the
// one workload of the benchmarks that fan out to a thousand agents.
func fanoutBrain(b *testing.B, authCfg auth.Config) *brain.Brain {
	b.Helper()
	br, err := brain.New(brain.Options{Log: quiet, Stream: stream.Options{StallTimeout: 5 * time.Minute}, Auth: authCfg})
	if err != nil {
		b.Fatal(err)
	}
	br.Hub.Apply(time.Time{}, 1, func(e *compute.Engine) compute.Delta {
		for i := range fanServices {
			e.SetSlice(testSlice(i, fanEndpoints, 0))
			e.SetService(testService(i))
		}
		return compute.Delta{}
	})
	br.MarkSynced()
	return br
}

// fanoutNodes are the simulated agents' node names, each with a certificate of its own.
func fanoutNodes() []string {
	nodes := make([]string, fanAgents)
	for i := range nodes {
		nodes[i] = simNode(i)
	}
	return nodes
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

// byteCounter counts a client connection's payload bytes on the wire, both ways.
type byteCounter struct{ in, out atomic.Int64 }

func (c *byteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *byteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *byteCounter) HandleConn(context.Context, stats.ConnStats) {}
func (c *byteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch p := s.(type) {
	case *stats.InPayload:
		c.in.Add(int64(p.WireLength))
	case *stats.OutPayload:
		c.out.Add(int64(p.WireLength))
	}
}
func (c *byteCounter) total() int64 { return c.in.Load() + c.out.Load() }

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

func waitUntil(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// measureResume syncs a real agent, disconnects it, and reconnects it with nothing changed: it
// returns the bytes both ways of the full snapshot, and of the resume.
func measureResume(b *testing.B, br *brain.Brain, addr string, creds grpc.DialOption) (full, resume int64) {
	counter := &byteCounter{}
	probe := newAgent("probe", addr)
	probe.dialOptions(grpc.WithStatsHandler(counter), creds)
	inSync := func() bool {
		s, ok := br.Hub.Sessions()["probe"]
		return ok && s.Synced && s.Pending == 0
	}
	gone := func() bool { _, ok := br.Hub.Sessions()["probe"]; return !ok }
	probe.start(b)
	waitUntil(b, "probe synced", time.Minute, inSync)
	full = counter.total()
	probe.halt()
	waitUntil(b, "probe gone", time.Minute, gone)
	counter.in.Store(0)
	counter.out.Store(0)
	probe.start(b)
	waitUntil(b, "probe resynced", time.Minute, inSync)
	resume = counter.total()
	probe.halt()
	waitUntil(b, "probe gone", time.Minute, gone)
	return full, resume
}

// BenchmarkFanout runs the brain in this process and 1,000 simulated agents, over real gRPC
// streams secured as in production (mutual TLS, each agent with its own node certificate), in a
// child process.
func BenchmarkFanout(b *testing.B) {
	raiseFileLimit()
	certs := newBenchPKI(b, append(fanoutNodes(), "probe")...)
	for b.Loop() {
		br := fanoutBrain(b, certs.brainAuth(b))
		lis := listen(b)
		go br.Serve(lis)
		addr := lis.Addr().String()

		// The resume probe: a real agent that syncs, leaves, and comes back with nothing changed.
		fullBytes, resumeBytes := measureResume(b, br, addr, certs.agentCreds(b, "probe"))

		m := br.Hub.Metrics()
		start := time.Now()
		fleet := startFleet(b, simConfig{Addr: addr, Agents: fanAgents, PKIDir: certs.Dir})
		waitUntil(b, "initial sync of every agent", 10*time.Minute, func() bool { return allSynced(br, fanAgents) })
		initial := time.Since(start)

		var lat []time.Duration
		bytesBefore := testutil.ToFloat64(m.Bytes)
		for c := range fanChanges {
			acks := testutil.ToFloat64(m.Acks)
			t0 := time.Now()
			setSlice(br, c, fanEndpoints, 1)
			waitUntil(b, "every agent acknowledged the change", time.Minute, func() bool {
				return testutil.ToFloat64(m.Acks) >= acks+fanAgents
			})
			lat = append(lat, time.Since(t0))
		}
		perAgent := (testutil.ToFloat64(m.Bytes) - bytesBefore) / fanChanges / fanAgents
		// An agent that reconnected would have been acknowledging a snapshot, not the changes.
		if got, want := testutil.ToFloat64(m.Snapshots), float64(fanAgents+2); got != want {
			b.Fatalf("%.0f snapshots sent, want %.0f: an agent reconnected during the measurement", got, want)
		}
		fleet.stop()
		br.Stop()

		slices.Sort(lat)
		p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		fmt.Printf("BENCH fanout agents=%d services=%d endpoints=%d initial_s=%.1f p50_ms=%.1f p99_ms=%.1f bytes_per_agent=%.0f resume_ratio=%.4f brain_rss_mib=%.0f resume_bytes=%d snapshot_bytes=%d tls=mtls\n",
			fanAgents, fanServices, fanServices*fanEndpoints, initial.Seconds(), p(0.5), p(0.99), perAgent,
			float64(resumeBytes)/float64(fullBytes), vmHWMMiB(), resumeBytes, fullBytes)
	}
}
