package stream

import (
	"fmt"
	"sync"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
)

// session is one agent's stream. Its memory is bounded by the number of distinct dirty names, not
// by the number of changes: a name changed a hundred times while an update is in flight is sent
// once, in its latest version.
//
// One update is in flight at a time. The sender is woken (kick) only when it has something to
// do: a change while nothing is in flight, or an acknowledgement that leaves changes or chunks
// waiting. An acknowledgement with nothing behind it wakes nobody: under a fan-out to thousands of
// agents each goroutine wake is a measurable share of the brain's CPU.
type session struct {
	node         string
	agentVersion string
	kick         chan struct{} // a buffered wake-up for the sender
	// dns is set when the agent's hello lists resname.CapabilityDNS: only then is it sent DNS
	// records, in its snapshot, its digests and its updates alike. Fixed before registration.
	dns bool

	mu        sync.Mutex
	dirty     map[string]time.Time // name -> earliest trigger of its pending change
	spare     map[string]time.Time // an emptied dirty map, reused
	inflight  *inflight
	rejected  map[string]rejection // name -> the version the agent refused
	acked     uint64
	lastError string
	synced    bool // the initial difference has been acknowledged in full
}

// inflight is the one update (or chunk of one) sent and not yet acknowledged.
type inflight struct {
	gen      uint64
	upserts  []*compute.Resource
	removals []string
	trigger  time.Time // the oldest change it carries
	// more says the sender holds further chunks of the same update: the ack must wake it.
	more bool
	// complete marks the last chunk of the initial difference.
	complete bool
}

type rejection struct{ version, err string }

// SessionStatus is what inspect shows of a connected agent.
type SessionStatus struct {
	AgentVersion string
	Pending      int
	Rejected     int
	LastError    string
	Lag          time.Duration
	Acked        uint64
	// Synced is true once the agent has acknowledged its whole initial difference.
	Synced bool
}

func newSession(node, agentVersion string) *session {
	return &session{
		node:         node,
		agentVersion: agentVersion,
		kick:         make(chan struct{}, 1),
		dirty:        map[string]time.Time{},
		spare:        map[string]time.Time{},
		rejected:     map[string]rejection{},
	}
}

// markDirty records names to (re)consider, and wakes the sender unless an update is in flight:
// its acknowledgement will.
func (s *session) markDirty(names []string, trigger time.Time) {
	if len(names) == 0 {
		return
	}
	s.mu.Lock()
	for _, n := range names {
		if t, ok := s.dirty[n]; !ok || trigger.Before(t) {
			s.dirty[n] = trigger
		}
	}
	idle := s.inflight == nil
	s.mu.Unlock()
	if idle {
		s.wake()
	}
}

func (s *session) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// maxSpareDirty bounds the dirty map a session keeps for reuse: thousands of sessions each
// keeping a map the size of a whole state would hold gigabytes after one large change.
const maxSpareDirty = 64

// takeDirty empties the dirty set. The map returned is the session's until the next call.
func (s *session) takeDirty() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.spare) > maxSpareDirty {
		s.spare = map[string]time.Time{} // a map keeps its size once grown: let a big one go
	} else {
		clear(s.spare)
	}
	d := s.dirty
	s.dirty, s.spare = s.spare, d
	return d
}

// busy says whether an update is in flight.
func (s *session) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inflight != nil
}

// isRejected reports whether the agent already refused this exact version: it is not resent
// until its content changes.
func (s *session) isRejected(name, version string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rejected) == 0 {
		return false
	}
	r, ok := s.rejected[name]
	return ok && r.version == version
}

func (s *session) setInflight(f *inflight) {
	s.mu.Lock()
	s.inflight = f
	s.mu.Unlock()
}

// onAck settles the update in flight: everything it carried is applied but what the agent lists.
// It wakes the sender when something waits behind it.
func (s *session) onAck(gen uint64, rejected map[string]rejection) (*inflight, error) {
	s.mu.Lock()
	f := s.inflight
	if f == nil || f.gen != gen {
		s.mu.Unlock()
		return nil, fmt.Errorf("ack for generation %d, but %s", gen, describeInflight(f))
	}
	s.inflight = nil
	s.acked = gen
	s.synced = s.synced || f.complete
	settle := func(name, version string) {
		if r, ok := rejected[name]; ok && r.version == version {
			s.rejected[name] = r
			s.lastError = name + ": " + r.err
			return
		}
		if len(s.rejected) > 0 {
			delete(s.rejected, name)
		}
	}
	for _, r := range f.upserts {
		settle(r.Name, r.Version)
	}
	for _, name := range f.removals {
		settle(name, "")
	}
	wake := f.more || len(s.dirty) > 0
	s.mu.Unlock()
	if wake {
		s.wake()
	}
	return f, nil
}

func describeInflight(f *inflight) string {
	if f == nil {
		return "no update is in flight"
	}
	return fmt.Sprintf("generation %d is in flight", f.gen)
}

func (s *session) status() SessionStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SessionStatus{AgentVersion: s.agentVersion, Pending: len(s.dirty), Rejected: len(s.rejected), LastError: s.lastError, Acked: s.acked, Synced: s.synced}
	oldest := time.Time{}
	for _, t := range s.dirty {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	if f := s.inflight; f != nil {
		st.Pending += len(f.upserts) + len(f.removals)
		if oldest.IsZero() || f.trigger.Before(oldest) {
			oldest = f.trigger
		}
	}
	if !oldest.IsZero() {
		st.Lag = time.Since(oldest)
	}
	return st
}
