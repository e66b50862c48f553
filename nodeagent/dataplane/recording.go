package dataplane

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
)

// Recording is a Dataplane that keeps what it is told in memory, for tests and for running the
// agent where no kernel backend is available. Fail makes chosen bases fail to apply.
type Recording struct {
	mu      sync.Mutex
	ports   map[string]Port
	changes []Change
	// Fail, when set, returns a non-nil error for a port that must be rejected.
	Fail func(Port) error
}

var _ Dataplane = (*Recording)(nil)

// NewRecording returns an empty recording dataplane.
func NewRecording() *Recording { return &Recording{ports: map[string]Port{}} }

// Apply records the change.
func (r *Recording) Apply(_ context.Context, c Change) map[string]error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var errs map[string]error
	for _, p := range c.Upserts {
		if r.Fail != nil {
			if err := r.Fail(p); err != nil {
				if errs == nil {
					errs = map[string]error{}
				}
				errs[p.Base] = fmt.Errorf("recording dataplane: %w", err)
				continue
			}
		}
		r.ports[p.Base] = p
	}
	for _, b := range c.Removals {
		delete(r.ports, b)
	}
	r.changes = append(r.changes, c)
	return errs
}

// Prune drops ports keep does not hold.
func (r *Recording) Prune(_ context.Context, keep map[string]bool) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	maps.DeleteFunc(r.ports, func(b string, _ Port) bool { return !keep[b] })
	return nil
}

// Reconcile has nothing to repair.
func (r *Recording) Reconcile(context.Context) error { return nil }

// Close does nothing.
func (r *Recording) Close() error { return nil }

// Ports returns the programmed ports by base.
func (r *Recording) Ports() map[string]Port {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.ports)
}

// Bases returns the programmed bases, sorted.
func (r *Recording) Bases() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.ports))
}

// Changes returns every change applied so far.
func (r *Recording) Changes() []Change {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.changes)
}
