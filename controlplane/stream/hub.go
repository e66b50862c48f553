// Package stream serves each node's desired state to its agent over one long-lived gRPC stream:
// an initial difference against what the agent holds, then small versioned updates, each
// acknowledged before the next, with the changes made meanwhile merged behind it.
package stream

import (
	"context"
	"sync"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Hub owns the engine and the agents' sessions. Sources change the model through Apply; the hub
// coalesces what they change and marks it dirty in the sessions it concerns.
type Hub struct {
	opts    Options
	metrics *Metrics
	slots   chan struct{}
	limits  *streamLimits

	mu       sync.RWMutex // guards engine, revision, synced
	engine   *compute.Engine
	revision uint64
	synced   bool
	syncedCh chan struct{}

	smu       sync.Mutex // guards sessions, batch, lastFlush
	sessions  map[*session]struct{}
	batch     *batch
	lastFlush time.Time
}

// batch is the coalesced change not yet handed to sessions.
type batch struct {
	delta   compute.Delta
	trigger time.Time
	timer   *time.Timer
}

// NewHub returns a hub over engine. metrics may be nil.
func NewHub(engine *compute.Engine, opts Options, metrics *Metrics) *Hub {
	opts.defaults()
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	h := &Hub{
		opts:     opts,
		metrics:  metrics,
		slots:    make(chan struct{}, opts.SnapshotSlots),
		limits:   newStreamLimits(opts.MaxStreams, opts.MaxStreamsPerNode, metrics.Open),
		engine:   engine,
		syncedCh: make(chan struct{}),
		sessions: map[*session]struct{}{},
	}
	return h
}

// Apply changes the model: fn runs with the engine locked and returns what changed. trigger is
// when the change happened at its origin (zero: now); revision, when not zero, is how far the
// source has been read, for replicas to compare.
func (h *Hub) Apply(trigger time.Time, revision uint64, fn func(*compute.Engine) compute.Delta) {
	now := time.Now()
	if trigger.IsZero() || trigger.After(now) {
		trigger = now
	}
	h.mu.Lock()
	d := fn(h.engine)
	if revision > h.revision {
		h.revision = revision
	}
	h.mu.Unlock()
	if d.Empty() {
		return
	}

	h.smu.Lock()
	defer h.smu.Unlock()
	b := h.batch
	switch {
	case b == nil && now.Sub(h.lastFlush) >= h.opts.MaxDelay:
		// An isolated change goes out at once: only changes that follow a send closely wait,
		// and a session also merges whatever arrives while its update is in flight.
		h.lastFlush = now
		h.distribute(&batch{delta: d, trigger: trigger}, h.sessionList())
		return
	case b == nil:
		b = &batch{trigger: trigger}
		b.timer = time.AfterFunc(h.lastFlush.Add(h.opts.MaxDelay).Sub(now), h.flush)
		h.batch = b
	case trigger.Before(b.trigger):
		b.trigger = trigger
	}
	b.delta.Merge(d)
}

// Metrics returns the hub's metrics.
func (h *Hub) Metrics() *Metrics { return h.metrics }

// MarkSynced records that the source has been read in full and the first compute is done.
func (h *Hub) MarkSynced() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.synced {
		h.synced = true
		close(h.syncedCh)
	}
}

// Synced is closed once the hub has been marked synced.
func (h *Hub) Synced() <-chan struct{} { return h.syncedCh }

// Revision returns how far the source has been read.
func (h *Hub) Revision() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.revision
}

// View runs fn with the engine read-locked.
func (h *Hub) View(fn func(*compute.Engine)) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	fn(h.engine)
}

// waitRevision waits until the hub has read its source up to rev, or the timeout passes. Agents
// ahead of a replica are rare (a replica restarting), so polling is enough.
func (h *Hub) waitRevision(ctx context.Context, rev uint64, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for h.Revision() < rev {
		if time.Now().After(deadline) || ctx.Err() != nil {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// flush hands the coalesced change to every session it concerns.
func (h *Hub) flush() {
	h.smu.Lock()
	b := h.batch
	h.batch = nil
	h.lastFlush = time.Now()
	sessions := h.sessionList()
	h.smu.Unlock()
	if b != nil {
		h.distribute(b, sessions)
	}
}

func (h *Hub) sessionList() []*session {
	out := make([]*session, 0, len(h.sessions))
	for s := range h.sessions {
		out = append(out, s)
	}
	return out
}

func (h *Hub) distribute(b *batch, sessions []*session) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	for _, s := range sessions {
		names := h.dirtyFor(s.node, &b.delta)
		if s.dns {
			names = append(names, b.delta.DNS...)
		}
		s.markDirty(names, b.trigger)
	}
}

// dirtyFor picks the names of d that may resolve differently for node: a default change matters
// only to nodes that see the default, a zone's change only to nodes without their own.
func (h *Hub) dirtyFor(node string, d *compute.Delta) []string {
	zone := h.engine.Zone(node)
	var out []string
	for _, name := range d.Shared {
		if !h.engine.Overridden(node, zone, name) {
			out = append(out, name)
		}
	}
	for _, name := range d.Zones[zone] {
		if !h.engine.NodeOverridden(node, name) {
			out = append(out, name)
		}
	}
	return append(out, d.Nodes[node]...)
}

// register adds a session whose snapshot is about to be read from the engine. The pending batch
// goes out to the other sessions first: its changes are already in the engine, so the new session
// gets them in its snapshot and must not receive them again.
func (h *Hub) register(s *session) {
	h.smu.Lock()
	defer h.smu.Unlock()
	if b := h.batch; b != nil {
		b.timer.Stop()
		h.batch = nil
		h.distribute(b, h.sessionList())
	}
	h.sessions[s] = struct{}{}
	h.metrics.Connected.Inc()
}

func (h *Hub) unregister(s *session) {
	h.smu.Lock()
	delete(h.sessions, s)
	h.smu.Unlock()
	h.metrics.Connected.Dec()
}

// Sessions returns the connected sessions' statuses by node name.
func (h *Hub) Sessions() map[string]SessionStatus {
	h.smu.Lock()
	defer h.smu.Unlock()
	out := make(map[string]SessionStatus, len(h.sessions))
	for s := range h.sessions {
		out[s.node] = s.status()
	}
	return out
}

// probed keeps the results that are about endpoints node was told to probe: an agent speaks for
// its own node's endpoints only.
func (h *Hub) probed(node string, results []*v1.EndpointHealth) []*v1.EndpointHealth {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var out []*v1.EndpointHealth
	for _, r := range results {
		ps := h.engine.Resolve(node, resname.Join(r.Namespace+"/"+r.Service, resname.KindProbes)).GetMsg().GetProbes()
		for _, t := range ps.GetTargets() {
			if t.Address == r.Address {
				out = append(out, r)
				break
			}
		}
	}
	return out
}
