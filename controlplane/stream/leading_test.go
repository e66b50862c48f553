package stream_test

import (
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/stream"
)

// TestIsolatedChangeDoesNotWaitForTheWindow sets an hour-long coalescing window: a change that
// follows no other must still reach the agent at once, since only bursts are worth waiting for.
func TestIsolatedChangeDoesNotWaitForTheWindow(t *testing.T) {
	hub, addr := serve(t, stream.Options{Quiet: time.Hour, MaxDelay: time.Hour}, nil)
	s := open(t, dial(t, addr)).hello(t, "n1")
	s.ack(t, s.update(t).Generation) // the (empty) snapshot
	hub.Apply(time.Time{}, 2, services(1))
	if u := s.update(t); len(u.Upserts) == 0 {
		t.Fatalf("update %v carries no resource", u)
	}
}
