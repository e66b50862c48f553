package brain_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/brain"
)

// BenchmarkTLSReconnect restarts a secured brain under 1,000 synced agents that hold the fan-out
// workload, and measures the storm: from the old brain's Stop until every agent has made a new
// TLS handshake with its node certificate, been let open its own node's stream, and completed its
// resumed snapshot. "unchanged": the new brain holds the same state, so a resume resends nothing;
// "changed": it has read 1% of services further (an endpoint moved), so each agent must be sent
// exactly its difference.
func BenchmarkTLSReconnect(b *testing.B) {
	raiseFileLimit()
	certs := newBenchPKI(b, fanoutNodes()...)
	b.Run("unchanged", func(b *testing.B) {
		for b.Loop() {
			benchReconnect(b, certs, nil)
		}
	})
	b.Run("changed", func(b *testing.B) {
		for b.Loop() {
			benchReconnect(b, certs, fanAwaySet())
		}
	})
}

// benchReconnect is one storm, onto a brain that has the services in moved moved.
func benchReconnect(b *testing.B, certs *benchPKI, moved []int) {
	old := fanoutBrain(b, certs.brainAuth(b))
	lis := listen(b)
	go old.Serve(lis)
	addr := lis.Addr().String()
	fleet := startFleet(b, simConfig{Addr: addr, Agents: fanAgents, PKIDir: certs.Dir, Work: workHeld})
	fleet.waitSnapshots(b, 1, 10*time.Minute)
	waitUntil(b, "every agent synced with the first brain", time.Minute, func() bool { return allSynced(old, fanAgents) })
	// One session each: every snapshot an agent completes from here on is from the new brain.
	if got := snapshots(old); got != fanAgents {
		b.Fatalf("the first brain sent %d snapshots to %d agents: some reconnected before the restart", got, fanAgents)
	}

	before := certs.handshakes.Load()
	brainCPU, agentsCPU := cpuTime(b, "self"), fleet.cpu(b)
	start := time.Now()
	old.Stop()
	br := fanoutBrain(b, certs.brainAuth(b), moved...)
	go br.Serve(relisten(b, addr))
	restart := time.Since(start)
	resumedAt, reports := fleet.waitSnapshots(b, 2, 5*time.Minute)
	seconds := resumedAt.Sub(start).Seconds()
	// Both processes' CPU over the storm: its seconds are latency, these say whose work it was.
	brainCPU, agentsCPU = cpuTime(b, "self")-brainCPU, fleet.cpu(b)-agentsCPU
	handshakes := certs.handshakes.Load() - before

	resent, held := checkResumed(b, old, br, reports, handshakes, moved)
	fleet.stop()
	br.Stop()
	fmt.Printf("BENCH tls reconnect agents=%d changed_share=%.2g seconds=%.1f restart_s=%.1f resent_per_agent=%.1f held_per_agent=%d handshakes=%d brain_cpu_s=%.1f agents_cpu_s=%.1f services=%d endpoints=%d local_share=%.2g topology_share=%.2g tls=mtls\n",
		fanAgents, float64(len(moved))/fanServices, seconds, restart.Seconds(), float64(resent)/float64(fanAgents), held, handshakes,
		brainCPU.Seconds(), agentsCPU.Seconds(),
		fanServices, fanServices*fanEndpoints, fanShare(kindLocal), fanShare(kindTopology))
}

// checkResumed holds the reconnect benchmark's invariants: every agent resumed exactly once, on
// a stream the new brain authorized for its node after a handshake of its own, holds what the
// brain wants it to hold, and was resent exactly the names whose version differs between the
// two brains for its node (none when nothing moved, some for every agent when something did).
// It returns the resources resent (the brain's count, which the agents' must match) and how
// many each agent holds.
func checkResumed(b *testing.B, old, br *brain.Brain, reports map[string]simReport, handshakes int64, moved []int) (resent, held int) {
	b.Helper()
	waitUntil(b, "every agent synced with the new brain", time.Minute, func() bool { return allSynced(br, fanAgents) })
	if got := snapshots(br); got != fanAgents {
		b.Fatalf("the new brain sent %d snapshots to %d agents", got, fanAgents)
	}
	if handshakes < int64(fanAgents) {
		b.Fatalf("%d client certificates verified by the new brain, want at least %d", handshakes, fanAgents)
	}
	var names []string
	for _, i := range moved {
		names = append(names, fanNames(i)...)
	}
	nodes := fanoutNodes()
	diff := changedNames(nodes, resolveAll(old, nodes, names), resolveAll(br, nodes, names))
	resent = resentCount(br)
	want := 0
	for _, node := range nodes {
		r := reports[node]
		resources, _ := stateSum(br, node)
		if r.snapshots != 2 || r.held != resources {
			b.Fatalf("%s: %d snapshots holding %d resources, want 2 holding %d", node, r.snapshots, r.held, resources)
		}
		if r.received != len(diff[node]) || (len(moved) > 0) != (r.received > 0) {
			b.Fatalf("%s: the resume resent %d resources, want its difference, %d", node, r.received, len(diff[node]))
		}
		want += len(diff[node])
		held = resources
	}
	if resent != want {
		b.Fatalf("the new brain resent %d resources, the agents' differences sum to %d", resent, want)
	}
	return resent, held
}

func snapshots(br *brain.Brain) int { return count(br.Hub.Metrics().Snapshots) }

// relisten listens again on the address a stopped brain served, as its restarted process would.
func relisten(b *testing.B, addr string) net.Listener {
	b.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return lis
}
