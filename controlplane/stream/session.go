package stream

import (
	"fmt"
	"sync"
	"time"
)

// session is one agent's stream. Its memory is bounded by the number of distinct dirty names, not
// by the number of changes: a name changed a hundred times while an update is in flight is sent
// once, in its latest version.
type session struct {
	node         string
	agentVersion string
	kick         chan struct{} // a buffered wake-up for the sender
	// dns is set when the agent's hello lists resname.CapabilityDNS: only then is it sent DNS
	// records, in its snapshot, its digests and its updates alike. Fixed before registration.
	dns bool

	mu        sync.Mutex
	dirty     map[string]time.Time // name -> earliest trigger of its pending change
	inflight  *inflight
	rejected  map[string]rejection // name -> the version the agent refused
	acked     uint64
	lastError string
	synced    bool // the initial difference has been acknowledged in full
}

// inflight is the one update sent and not yet acknowledged.
type inflight struct {
	gen      uint64
	versions map[string]string // upserted name -> version; removals have ""
	trigger  time.Time         // the oldest change it carries
	acked    chan struct{}
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
		rejected:     map[string]rejection{},
	}
}

// markDirty records names to (re)consider and wakes the sender.
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
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// takeDirty empties the dirty set.
func (s *session) takeDirty() map[string]time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.dirty
	s.dirty = map[string]time.Time{}
	return d
}

// isRejected reports whether the agent already refused this exact version: it is not resent
// until its content changes.
func (s *session) isRejected(name, version string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.rejected[name]
	return ok && r.version == version
}

func (s *session) markSynced() {
	s.mu.Lock()
	s.synced = true
	s.mu.Unlock()
}

func (s *session) setInflight(f *inflight) {
	s.mu.Lock()
	s.inflight = f
	s.mu.Unlock()
}

// onAck settles the update in flight: everything it carried is applied but what the agent lists.
func (s *session) onAck(gen uint64, rejected map[string]rejection) (*inflight, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.inflight
	if f == nil || f.gen != gen {
		return nil, fmt.Errorf("ack for generation %d, but %s", gen, describeInflight(f))
	}
	s.inflight = nil
	s.acked = gen
	for name, v := range f.versions {
		if r, ok := rejected[name]; ok && r.version == v {
			s.rejected[name] = r
			s.lastError = name + ": " + r.err
			continue
		}
		delete(s.rejected, name)
	}
	close(f.acked)
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
		st.Pending += len(f.versions)
		if oldest.IsZero() || f.trigger.Before(oldest) {
			oldest = f.trigger
		}
	}
	if !oldest.IsZero() {
		st.Lag = time.Since(oldest)
	}
	return st
}
