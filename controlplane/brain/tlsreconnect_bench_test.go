package brain_test

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
)

// BenchmarkTLSReconnect restarts a secured brain under 1,000 synced agents that hold the fan-out
// workload, and measures the storm: from the old brain's Stop until every agent has made a new
// TLS handshake with its node certificate, been let open its own node's stream, and completed its
// resumed snapshot. The new brain holds the same state, so a resume must resend nothing.
func BenchmarkTLSReconnect(b *testing.B) {
	raiseFileLimit()
	certs := newBenchPKI(b, fanoutNodes()...)
	for b.Loop() {
		old := fanoutBrain(b, certs.brainAuth(b))
		lis := listen(b)
		go old.Serve(lis)
		addr := lis.Addr().String()
		fleet := startFleet(b, simConfig{Addr: addr, Agents: fanAgents, PKIDir: certs.Dir, Hold: true})
		fleet.waitSnapshots(b, 1, 10*time.Minute)
		waitUntil(b, "every agent synced with the first brain", time.Minute, func() bool { return allSynced(old, fanAgents) })
		// One session each: every snapshot an agent completes from here on is from the new brain.
		if got := snapshots(old); got != fanAgents {
			b.Fatalf("the first brain sent %d snapshots to %d agents: some reconnected before the restart", got, fanAgents)
		}

		before := certs.handshakes.Load()
		start := time.Now()
		old.Stop()
		br := fanoutBrain(b, certs.brainAuth(b))
		go br.Serve(relisten(b, addr))
		restart := time.Since(start)
		resumedAt, reports := fleet.waitSnapshots(b, 2, 5*time.Minute)
		seconds := resumedAt.Sub(start).Seconds()
		handshakes := certs.handshakes.Load() - before

		resent, held := checkResumed(b, br, reports, handshakes)
		fleet.stop()
		br.Stop()
		fmt.Printf("BENCH tls reconnect agents=%d seconds=%.1f restart_s=%.1f resent_per_agent=%.1f held_per_agent=%d handshakes=%d services=%d endpoints=%d tls=mtls\n",
			fanAgents, seconds, restart.Seconds(), float64(resent)/fanAgents, held, handshakes, fanServices, fanServices*fanEndpoints)
	}
}

// checkResumed holds the reconnect benchmark's invariants: every agent resumed exactly once, on
// a stream the new brain authorized for its node after a handshake of its own, holds what the
// brain wants it to hold, and was resent nothing, as nothing changed. It returns the resources
// resent (the brain's count, which the agents' must match) and how many each agent holds.
func checkResumed(b *testing.B, br *brain.Brain, reports map[string]simReport, handshakes int64) (resent, held int) {
	b.Helper()
	waitUntil(b, "every agent synced with the new brain", time.Minute, func() bool { return allSynced(br, fanAgents) })
	if got := snapshots(br); got != fanAgents {
		b.Fatalf("the new brain sent %d snapshots to %d agents", got, fanAgents)
	}
	if handshakes < fanAgents {
		b.Fatalf("%d client certificates verified by the new brain, want at least %d", handshakes, fanAgents)
	}
	m := br.Hub.Metrics()
	resent = int(testutil.ToFloat64(m.Resources.WithLabelValues("upsert")) + testutil.ToFloat64(m.Resources.WithLabelValues("remove")))
	received := 0
	for i := range fanAgents {
		node := simNode(i)
		r := reports[node]
		want := heldBy(br, node)
		if r.snapshots != 2 || r.held != want {
			b.Fatalf("%s: %d snapshots holding %d resources, want 2 holding %d", node, r.snapshots, r.held, want)
		}
		received += r.received
		held = want
	}
	if resent != 0 || received != resent {
		b.Fatalf("the resume resent %d resources (the agents received %d), want none: nothing changed", resent, received)
	}
	return resent, held
}

// heldBy is how many resources the brain wants node to hold.
func heldBy(br *brain.Brain, node string) int {
	n := 0
	br.Hub.View(func(e *compute.Engine) { e.ForEach(node, func(*compute.Resource) { n++ }) })
	return n
}

func snapshots(br *brain.Brain) int { return int(testutil.ToFloat64(br.Hub.Metrics().Snapshots)) }

// relisten listens again on the address a stopped brain served, as its restarted process would.
func relisten(b *testing.B, addr string) net.Listener {
	b.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	return lis
}
