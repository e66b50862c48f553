package brain_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/brain"
)

// changeRun is what the measured changes gave.
type changeRun struct {
	lat []time.Duration
	// wirePerAgent is the bytes on the agents' sockets, both ways, per agent and change.
	wirePerAgent float64
	// brainCPU and agentsCPU are the CPU time of the brain's process (this one) and of the
	// agents' process over the changes' timed windows.
	brainCPU, agentsCPU time.Duration
}

// measureChanges moves an endpoint of fanChanges services, one after another, each a sample:
// from the change to the acknowledgement of the last agent whose view it changes, which is every
// agent for a Cluster or Local service and the agents of two zones for a hinted one. Each change
// is held to its design (checkMove); at the end, every update sent must have been one an agent
// needed, and applied.
func measureChanges(b *testing.B, br *brain.Brain, fleet *simFleet) changeRun {
	b.Helper()
	m, nodes := br.Hub.Metrics(), fanoutNodes()
	updates, acks, rejections := count(m.Updates), count(m.Acks), count(m.Rejections)
	wire := sum(fleet.wire(b))
	var run changeRun
	needed := 0
	runStart, samples := time.Now(), os.Getenv(envFanoutSamples) != ""
	for c := range fanChanges {
		i := fanChanged(c, 0)
		_, seen := moveEffect(i)
		sees := seenBy(seen)
		before := resolveAll(br, nodes, fanNames(i))
		acked := count(m.Acks)
		brainCPU, agentsCPU := cpuTime(b, "self"), fleet.cpu(b)
		t0 := time.Now()
		d := moveServices(br, i)
		waitAcks(b, br, acked+sees)
		run.lat = append(run.lat, time.Since(t0))
		if samples {
			fmt.Fprintf(os.Stderr, "SAMPLE %d kind=%s t=%.3f lat_ms=%.1f\n", c, fanKindOf(i), time.Since(runStart).Seconds(), ms(run.lat[len(run.lat)-1]))
		}
		// CPU over the timed window only: the checks between changes run in the brain's process.
		run.brainCPU += cpuTime(b, "self") - brainCPU
		run.agentsCPU += fleet.cpu(b) - agentsCPU
		checkMove(b, i, d, before, resolveAll(br, nodes, fanNames(i)))
		needed += sees
	}
	run.wirePerAgent = float64(sum(fleet.wire(b))-wire) / fanChanges / float64(fanAgents)
	if got := count(m.Updates) - updates; got != needed {
		b.Fatalf("%d updates sent for %d changes, want %d: one per agent whose view changed", got, fanChanges, needed)
	}
	if got := count(m.Acks) - acks; got != needed {
		b.Fatalf("%d updates acknowledged, want %d", got, needed)
	}
	if got := count(m.Rejections) - rejections; got != 0 {
		b.Fatalf("agents rejected %d resources", got)
	}
	return run
}

// waitAcks waits until the brain has counted n acknowledgements. It polls every 200µs, as it
// times the change: a metric read, whose cost counts in the brain's CPU.
func waitAcks(b *testing.B, br *brain.Brain, n int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for count(br.Hub.Metrics().Acks) < n {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %d acknowledgements: every agent concerned by the change", n)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}
