package stream

import (
	"context"
	"sync"
	"time"
)

// snapshotSlot is one stream's admission to the initial-difference semaphore (hub.slots). It is
// let go when the agent has acknowledged its whole snapshot, when the stream ends, or once
// SnapshotSlotHold has passed, whichever comes first. The slots bound the work and buffers of
// snapshots in progress; an agent that never acknowledges costs neither once its snapshot is
// sent, so it must not keep others from theirs until its stall watchdog fires.
type snapshotSlot struct {
	slots chan struct{}
	once  sync.Once
	timer *time.Timer
}

// acquireSlot waits for a free snapshot slot.
func (h *Hub) acquireSlot(ctx context.Context) (*snapshotSlot, error) {
	select {
	case h.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	s := &snapshotSlot{slots: h.slots}
	s.timer = time.AfterFunc(h.opts.SnapshotSlotHold, func() {
		if s.letGo() {
			h.metrics.SlotsExpired.Inc()
		}
	})
	return s, nil
}

// release lets the slot go if it is still held; it may be called any number of times.
func (s *snapshotSlot) release() {
	s.timer.Stop()
	s.letGo()
}

// letGo frees the slot once, and says whether this call did.
func (s *snapshotSlot) letGo() bool {
	did := false
	s.once.Do(func() {
		<-s.slots
		did = true
	})
	return did
}

// SnapshotSlotsInUse returns how many snapshot slots streams hold now.
func (h *Hub) SnapshotSlotsInUse() int { return len(h.slots) }
