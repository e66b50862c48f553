package stream_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	agentstream "github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

// TestUnacknowledgedSnapshotsDoNotStarveOthers: more streams than there are snapshot slots take
// their snapshots and never acknowledge them (issue 12: 64 of them kept a real agent from its
// first sync for 85 s). Each lets its slot go after the hold bound, long before its stall
// watchdog would end it, so a real agent gets its first sync meanwhile.
func TestUnacknowledgedSnapshotsDoNotStarveOthers(t *testing.T) {
	const slots, stuck = 2, 6
	opts := stream.Options{SnapshotSlots: slots, SnapshotSlotHold: 50 * time.Millisecond, StallTimeout: 10 * time.Minute}
	hub, addr := serve(t, opts, services(20))
	conn := dial(t, addr)
	var streams []rawStream
	for i := range stuck {
		streams = append(streams, open(t, conn).hello(t, fmt.Sprintf("stuck-%d", i)))
	}
	snapshots := func() float64 { return testutil.ToFloat64(hub.Metrics().Snapshots) }
	testwait.Eventually(t, "every slot taken by a stream that will not acknowledge", func() bool { return snapshots() >= slots })

	a := agentstream.New(agentstream.Config{
		NodeName: "real", AgentVersion: "test", Brains: []string{addr}, Dataplane: dataplane.NewRecording(), Log: quiet,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); a.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	testwait.Eventually(t, "the real agent synced", func() bool { return a.Status().Synced })

	for _, s := range streams {
		s.update(t) // every stuck stream got its snapshot, so each has held a slot
	}
	testwait.Eventually(t, "every slot free again", func() bool { return hub.SnapshotSlotsInUse() == 0 })
	if n := testutil.ToFloat64(hub.Metrics().SlotsExpired); n < stuck {
		t.Errorf("%v slots let go at the hold bound, want at least %d (one per stuck stream)", n, stuck)
	}
	// The hold bound let the slots go, not the watchdog: the stuck streams are still served.
	sessions := hub.Sessions()
	for i := range stuck {
		if _, ok := sessions[fmt.Sprintf("stuck-%d", i)]; !ok {
			t.Errorf("stuck-%d was cut; only its slot should have gone", i)
		}
	}
	if n := testutil.ToFloat64(hub.Metrics().Stalled); n != 0 {
		t.Errorf("%v streams stalled, want 0", n)
	}
}
