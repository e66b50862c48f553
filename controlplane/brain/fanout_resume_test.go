package brain_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/brain"
)

// fanResumed is how many agents go away while 1% of services change: the first ten, in every
// zone.
const fanResumed = 10

// resumeRun is what the resume of the away agents gave.
type resumeRun struct {
	away []string
	// ratio is the bytes on the wire of the resumes over those of the same agents' initial
	// snapshots, handshakes included on both sides.
	ratio          float64
	resentPerAgent float64
}

// measureResume stops fanResumed agents, changes 1% of services (every agent still connected
// applies them), and starts the agents again with what they hold: each must be sent exactly the
// difference, no more, and end holding what the brain wants.
func measureResume(b *testing.B, br *brain.Brain, fleet *simFleet, snapshotWire map[string]int64) resumeRun {
	b.Helper()
	m := br.Hub.Metrics()
	run := resumeRun{away: fanoutNodes()[:fanResumed]}
	span := []string{"0", strconv.Itoa(fanResumed)}
	fleet.command(b, append([]string{"halt"}, span...)...)
	waitUntil(b, "the away agents' sessions ended", time.Minute, func() bool {
		s := br.Hub.Sessions()
		return !slices.ContainsFunc(run.away, func(n string) bool { _, ok := s[n]; return ok })
	})

	changed := fanAwaySet()
	var names []string
	for _, i := range changed {
		names = append(names, fanNames(i)...)
	}
	before := resolveAll(br, run.away, names)
	acked := count(m.Acks)
	moveServices(br, changed...) // one batch: one update for each agent still connected
	waitUntil(b, "the connected agents applied the change", time.Minute, func() bool {
		return count(m.Acks) >= acked+fanAgents-fanResumed
	})
	diff := changedNames(run.away, before, resolveAll(br, run.away, names))

	wire, resent := fleet.wire(b), resentCount(br)
	fleet.command(b, append([]string{"start"}, span...)...)
	waitUntil(b, "the away agents resumed", 5*time.Minute, func() bool {
		s := br.Hub.Sessions()
		return !slices.ContainsFunc(run.away, func(n string) bool { st, ok := s[n]; return !ok || !st.Synced || st.Pending != 0 })
	})
	after := fleet.wire(b)

	want, resumeBytes, fullBytes := 0, int64(0), int64(0)
	for _, n := range run.away {
		want += len(diff[n])
		resumeBytes += after[n] - wire[n]
		fullBytes += snapshotWire[n]
	}
	if got := resentCount(br) - resent; got != want || want == 0 {
		b.Fatalf("the resumes resent %d resources; the difference is %d (and must not be 0)", got, want)
	}
	run.ratio = float64(resumeBytes) / float64(fullBytes)
	run.resentPerAgent = float64(want) / fanResumed
	return run
}

// resentCount is how many resources br has sent, upserts and removals.
func resentCount(br *brain.Brain) int {
	r := br.Hub.Metrics().Resources
	return count(r.WithLabelValues("upsert")) + count(r.WithLabelValues("remove"))
}
