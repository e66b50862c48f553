package stream_test

import (
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/resname"
)

// TestIsolatedChangeDoesNotWaitForTheWindow sets an hour-long coalescing window: a change that
// follows no other must still reach the agent at once, since only bursts are worth waiting for.
func TestIsolatedChangeDoesNotWaitForTheWindow(t *testing.T) {
	hub, addr := serve(t, stream.Options{MaxDelay: time.Hour}, nil)
	s := open(t, dial(t, addr)).hello(t, "n1")
	s.ack(t, s.update(t).Generation) // the (empty) snapshot
	hub.Apply(time.Time{}, 2, services(1))
	if u := s.update(t); len(u.Upserts) == 0 {
		t.Fatalf("update %v carries no resource", u)
	}
}

// TestSustainedChurnIsPacedByMaxDelay makes a change every 5 ms for half a second: an agent that
// acknowledges at once still gets at most one update per MaxDelay (sending each change at once
// would let the agent's round trip set the pace, and a thousand agents' round trips the CPU's
// limit), and nothing is lost.
func TestSustainedChurnIsPacedByMaxDelay(t *testing.T) {
	const maxDelay, changes = 100 * time.Millisecond, 100
	hub, addr := serve(t, stream.Options{MaxDelay: maxDelay}, nil)
	s := open(t, dial(t, addr)).hello(t, "n1")
	s.ack(t, s.update(t).Generation) // the (empty) snapshot
	start := time.Now()
	go func() {
		for i := range changes {
			hub.Apply(time.Time{}, uint64(2+i), func(e *compute.Engine) compute.Delta { return e.SetService(testService(i)) })
			time.Sleep(5 * time.Millisecond)
		}
	}()
	held, updates := map[string]bool{}, 0
	for len(held) < changes {
		u := s.update(t)
		updates++
		for _, r := range u.Upserts {
			if b, kind := resname.Split(r.Name); kind == resname.KindService {
				held[b] = true
			}
		}
		s.ack(t, u.Generation)
	}
	if most := int(time.Since(start)/maxDelay) + 1; updates > most {
		t.Errorf("%d changes over %s arrived in %d updates, want at most %d (one per %s)", changes,
			time.Since(start).Round(time.Millisecond), updates, most, maxDelay)
	}
}
