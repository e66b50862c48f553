package baremetal

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// leasePrefix is where agents' node leases live: leases/<node>, holding the node's NodeInfo.
const leasePrefix = "leases/"

// sessionWait bounds how long a report waits for its session's lease: the hook that grants it
// starts with the stream, so a report can arrive while the grant is still on its way to etcd.
const sessionWait = 5 * time.Second

// writeTimeout bounds the writes of one health report.
const writeTimeout = 10 * time.Second

// Membership turns agents' streams into node leases and their probe reports into stored health,
// each report written under the lease of the session that sent it.
type Membership struct {
	Store *store.Store
	// LeaseTTL is how long a node stays registered after its agent's stream ends (default 10s).
	LeaseTTL time.Duration
	Log      *slog.Logger

	mu sync.Mutex
	// sessions are keyed by their stream's context, which both hooks get: a node's new stream
	// can start (and report) while its old one has not ended, so the node does not tell which
	// session a report came from.
	sessions map[context.Context]*session
	started  chan struct{} // closed and replaced when a session starts: waiting reports look again

	leaseState leaseState // see leasestate.go
}

// session is one stream's hold on its node's lease.
type session struct {
	granted chan struct{} // closed once the grant is done
	lease   *store.Lease  // nil when it failed
}

// Hooks returns the stream hooks of bare-metal mode.
func (m *Membership) Hooks() stream.Hooks {
	return stream.Hooks{OnConnect: m.hold, OnHealth: m.record}
}

type leaseInfo struct {
	Addresses []string          `json:"addresses,omitempty"`
	Zone      string            `json:"zone,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	// ExecCommands are the commands the node's agent allows exec checks to run: apply refuses
	// an exec check a node hosting one of the service's backends would not run.
	ExecCommands []string `json:"execCommands,omitempty"`
}

// hold keeps the node's lease while its agent's stream is up. Several sessions holding leases
// for the same node (on this replica or others) overwrite one registration: the last one's lease
// wins it, and any of them keeps the node registered. Health reports go under the lease of the
// session that sent them, whichever that is.
//
// The lease is held for the whole life of the stream: an etcd outage longer than the TTL, or a
// revoked lease, must not leave a connected node unregistered (and its endpoints out everywhere
// after the grace) until its agent happens to reconnect. The store re-establishes it and writes
// the registration and the session's health records again under the new lease.
func (m *Membership) hold(ctx context.Context, hello *v1.Hello) {
	node := hello.GetNode()
	info := leaseInfo{Addresses: node.GetAddresses(), Zone: node.GetZone(), Labels: node.GetLabels(), ExecCommands: node.GetExecCommands()}
	b, err := json.Marshal(info)
	if err != nil {
		return
	}
	ttl := m.LeaseTTL
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	s := &session{granted: make(chan struct{})}
	m.start(ctx, s)
	defer m.end(ctx)
	var once sync.Once
	granted := func(l *store.Lease) {
		once.Do(func() {
			s.lease = l
			close(s.granted)
		})
	}
	// Reports wait for the grant no longer than the stream lives.
	defer granted(nil)
	defer m.leaseEnded(ctx)
	name := hello.NodeName
	here := newPresence(name)
	var held *store.Lease
	defer func() {
		if held != nil {
			if err := here.clear(held); err != nil {
				m.log().Warn("node's connected mark not cleared: it goes with its lease", "node", name, "err", err)
			}
		}
	}()
	err = m.Store.HoldLease(ctx, leasePrefix+name, b, ttl, store.LeaseEvents{
		Granted: func(l *store.Lease) {
			m.leaseHeld(ctx, name)
			if err := here.mark(l); err != nil {
				m.log().Warn("node's connected mark not written; the lease's recovery writes it", "node", name, "err", err)
			}
			held = l
			granted(l)
		},
		Lost: func(err error) { m.leaseLost(ctx, name, err) },
		Restored: func() {
			m.leaseHeld(ctx, name)
			m.log().Info("node lease re-established; registration and health records rewritten", "node", name)
		},
	})
	if err != nil {
		m.log().Error("node lease not held", "node", name, "err", err)
	}
}

func (m *Membership) start(stream context.Context, s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions == nil {
		m.sessions = map[context.Context]*session{}
	}
	m.sessions[stream] = s
	if m.started != nil {
		close(m.started)
	}
	m.started = make(chan struct{})
}

// end forgets the stream's session. Its lease lives on for its TTL: what was written under it
// goes when it expires.
func (m *Membership) end(stream context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.sessions, stream)
}

// lease returns the lease of the session of stream, waiting for the session to start (the stream
// runs OnConnect on its own goroutine, so a report can come first) and for its grant; nil when
// there is none before wait ends, or once the stream has ended.
func (m *Membership) lease(wait context.Context, stream context.Context) *store.Lease {
	for {
		m.mu.Lock()
		s := m.sessions[stream]
		if m.started == nil {
			m.started = make(chan struct{})
		}
		started := m.started
		m.mu.Unlock()
		if s != nil {
			select {
			case <-s.granted:
				return s.lease
			case <-wait.Done():
				return nil
			}
		}
		select {
		case <-started:
		case <-wait.Done():
			return nil
		case <-stream.Done():
			return nil
		}
	}
}

// record stores probe results under the lease of the session that reported them; without one
// they are dropped: a report must not outlive the session that made it, nor land under another
// session's lease, which may end first while the agent, having reported once, says no more.
// The stream calls it on a worker of its own, so a slow store holds up only that stream's later
// reports (which it coalesces meanwhile), never its acknowledgements.
func (m *Membership) record(stream context.Context, node string, results []*v1.EndpointHealth) {
	wctx, cancel := context.WithTimeout(context.Background(), sessionWait)
	defer cancel()
	lease := m.lease(wctx, stream)
	if lease == nil {
		m.log().Warn("probe results dropped: the reporting session holds no lease", "node", node, "results", len(results))
		return
	}
	// The stream hands reports over on a worker, so one may come after its stream ended (the
	// session is forgotten a moment later): its results are the ended session's, not wanted.
	if stream.Err() != nil {
		m.log().Debug("probe results dropped: their stream ended", "node", node, "results", len(results))
		return
	}
	// Not the stream's context itself: its peer and metadata would reach the embedded etcd,
	// which reads identities from them (NOTES.md). But the writes end with the stream, so that
	// a slow store does not keep the worker of a stream that is gone.
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	defer context.AfterFunc(stream, cancel)()
	for _, r := range results {
		if err := RecordHealth(ctx, lease, r.Namespace, r.Service, r.Address, node, r.Ready, r.Message); err != nil {
			if stream.Err() != nil {
				m.log().Debug("probe results dropped: their stream ended", "node", node, "err", err)
				return
			}
			m.log().Error("probe result not stored", "node", node, "endpoint", r.Address, "err", err)
		}
	}
}

func (m *Membership) log() *slog.Logger {
	if m.Log == nil {
		return slog.Default()
	}
	return m.Log
}
