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

// Membership turns agents' streams into node leases and their probe reports into stored health,
// each report written under the lease of the reporting node's session.
type Membership struct {
	Store *store.Store
	// LeaseTTL is how long a node stays registered after its agent's stream ends (default 10s).
	LeaseTTL time.Duration
	Log      *slog.Logger

	mu       sync.Mutex
	sessions map[string]*session
	started  chan struct{} // closed and replaced when a session starts: waiting reports look again
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

// hold keeps the node's lease while its agent's stream is up. Several replicas holding leases for
// the same node overwrite one value: the last connection's lease wins, and any of them keeps it.
// The newest session on this replica is the one its node's reports are written under.
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
	m.start(hello.NodeName, s)
	defer m.end(hello.NodeName, s)
	lease, err := m.Store.GrantLease(ctx, leasePrefix+hello.NodeName, b, ttl)
	s.lease = lease
	close(s.granted)
	if err == nil {
		err = lease.KeepAlive(ctx)
	}
	if err != nil && ctx.Err() == nil {
		m.log().Error("node lease lost", "node", hello.NodeName, "err", err)
	}
}

func (m *Membership) start(node string, s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions == nil {
		m.sessions = map[string]*session{}
	}
	m.sessions[node] = s
	if m.started != nil {
		close(m.started)
	}
	m.started = make(chan struct{})
}

// end forgets s unless a newer session of the node replaced it. Its lease lives on for its TTL:
// what was written under it goes when it expires.
func (m *Membership) end(node string, s *session) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sessions[node] == s {
		delete(m.sessions, node)
	}
}

// lease returns the lease of node's current session, waiting for a session to start and for its
// grant; nil when there is none in time.
func (m *Membership) lease(ctx context.Context, node string) *store.Lease {
	for {
		m.mu.Lock()
		s := m.sessions[node]
		if m.started == nil {
			m.started = make(chan struct{})
		}
		started := m.started
		m.mu.Unlock()
		if s != nil {
			select {
			case <-s.granted:
				return s.lease
			case <-ctx.Done():
				return nil
			}
		}
		select {
		case <-started:
		case <-ctx.Done():
			return nil
		}
	}
}

// record stores probe results under the reporting node's session lease; without one they are
// dropped: a report must not outlive the session that made it.
func (m *Membership) record(node string, results []*v1.EndpointHealth) {
	wctx, cancel := context.WithTimeout(context.Background(), sessionWait)
	defer cancel()
	lease := m.lease(wctx, node)
	if lease == nil {
		m.log().Warn("probe results dropped: the node holds no session lease", "node", node, "results", len(results))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range results {
		if err := RecordHealth(ctx, lease, r.Namespace, r.Service, r.Address, node, r.Ready); err != nil {
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
