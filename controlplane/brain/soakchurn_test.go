package brain_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// The soak's churn, on the fan-out workload (fanout_workload_test.go): soakRate changes a second,
// one every 1/soakRate, each its own Apply as a source's events are. In every ten, one deletes a
// service (its service and its endpoint slice), one adds back the service deleted longest ago once
// soakDeletedHeld are away, the others move endpoint 0 of a service to its other node and back:
// endpoint sets change, and the brain's and agents' maps shrink and grow by whole services.
const (
	soakRate = 100
	// soakDeletedHeld is how many services stay deleted (2% of the workload): a service comes
	// back about twenty seconds after it went.
	soakDeletedHeld = 200
)

// soakChurn is the source: what it changed so far, in fixed-size state, as its memory counts in
// the brain's process.
type soakChurn struct {
	br      *brain.Brain
	moved   []bool // service i has endpoint 0 on its other node
	deleted []bool
	away    []int // deleted services, oldest first: a ring of soakDeletedHeld+1
	head, n int   // the ring's oldest entry and length
	cursor  int   // the next service to delete

	changes, flips, deletes, adds int
	// behind is how late the last change was on its schedule; elapsed is how long run ran.
	behind, elapsed time.Duration
}

func newSoakChurn(br *brain.Brain) *soakChurn {
	return &soakChurn{br: br, moved: make([]bool, fanServices), deleted: make([]bool, fanServices), away: make([]int, soakDeletedHeld+1)}
}

// run changes the brain on schedule until ctx ends: change k at start + k/soakRate, at once when
// late (a source's backlog), so the rate holds on average.
func (c *soakChurn) run(ctx context.Context) {
	start := time.Now()
	defer func() { c.elapsed = time.Since(start) }()
	for k := 0; ; k++ {
		at := start.Add(time.Duration(k) * time.Second / soakRate)
		if wait := time.Until(at); wait > 0 {
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return
			}
		} else if ctx.Err() != nil {
			return
		}
		c.behind = max(0, time.Since(at))
		c.change(k)
	}
}

// change makes change k.
func (c *soakChurn) change(k int) {
	switch {
	case k%10 == 0:
		c.deleteNext()
	case k%10 == 5 && c.n >= soakDeletedHeld:
		c.addOldest()
	default:
		c.flip(k)
	}
	c.changes++
}

// flip moves endpoint 0 of a service that is not deleted to its other node, or back; services are
// visited in a stride prime to their count, so every kind has its share.
func (c *soakChurn) flip(k int) {
	i := k * 7919 % fanServices
	for c.deleted[i] {
		i = (i + 1) % fanServices
	}
	c.moved[i] = !c.moved[i]
	sl := fanSlice(i, c.moved[i])
	c.br.Hub.Apply(time.Time{}, 0, func(e *compute.Engine) compute.Delta { return e.SetSlice(sl) })
	c.flips++
}

// deleteNext deletes the next service in turn that is not deleted already.
func (c *soakChurn) deleteNext() {
	for c.deleted[c.cursor] {
		c.cursor = (c.cursor + 1) % fanServices
	}
	i := c.cursor
	c.cursor = (c.cursor + 1) % fanServices
	c.deleted[i] = true
	c.away[(c.head+c.n)%len(c.away)] = i
	c.n++
	name := fmt.Sprintf("svc-%d", i)
	c.br.Hub.Apply(time.Time{}, 0, func(e *compute.Engine) compute.Delta {
		d := e.DeleteService(model.ServiceKey{Namespace: "default", Name: name})
		d.Merge(e.DeleteSlice(model.SliceKey{Namespace: "default", Name: name + "-1"}))
		return d
	})
	c.deletes++
}

// addOldest adds back the service deleted longest ago, with its endpoints where they were.
func (c *soakChurn) addOldest() {
	i := c.away[c.head]
	c.head, c.n = (c.head+1)%len(c.away), c.n-1
	c.deleted[i] = false
	sl, svc := fanSlice(i, c.moved[i]), fanService(i)
	c.br.Hub.Apply(time.Time{}, 0, func(e *compute.Engine) compute.Delta {
		d := e.SetSlice(sl)
		d.Merge(e.SetService(svc))
		return d
	})
	c.adds++
}
