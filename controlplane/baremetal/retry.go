package baremetal

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/ganglion-proxy/ganglion/store"
)

// conflictAttempts bounds how often an apply or delete starts over after another commit got in
// first. Every round of colliding writers lets at least one of them through, so dozens of
// concurrent clients finish well within it, and a store that never stops changing still gets an
// answer.
const conflictAttempts = 32

// Pauses between attempts: short at first (a conflict usually means one other writer), growing
// so that many writers spread out instead of colliding again in lockstep.
const (
	conflictPauseMin = 2 * time.Millisecond
	conflictPauseMax = 200 * time.Millisecond
)

// retryConflicts runs try until it ends with anything but store.ErrConflict, at most
// conflictAttempts times, with jittered, growing pauses between attempts. try must start from
// scratch each time: re-read the store and redo whatever it derived from the last read.
func retryConflicts(ctx context.Context, try func() error) error {
	pause := conflictPauseMin
	for attempt := 1; ; attempt++ {
		err := try()
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
		if attempt == conflictAttempts {
			return fmt.Errorf("gave up after %d attempts: %w", attempt, err)
		}
		t := time.NewTimer(pause/2 + rand.N(pause))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("while retrying after a conflict: %w", ctx.Err())
		}
		pause = min(2*pause, conflictPauseMax)
	}
}

// cloneForAttempt copies what allocation fills in (VIPs, node ports, the health check node port)
// so that each attempt allocates from the user's document, not from what an earlier attempt
// chose against a store that has changed since: reusing those made a retry refuse addresses
// the user never asked for as "already taken".
func cloneForAttempt(objs []*Object) []*Object {
	out := make([]*Object, len(objs))
	for i, o := range objs {
		c := *o
		if o.Service != nil {
			s := *o.Service
			s.Spec.VIPs = slices.Clone(s.Spec.VIPs)
			s.Spec.Ports = slices.Clone(s.Spec.Ports)
			c.Service = &s
		}
		out[i] = &c
	}
	return out
}
