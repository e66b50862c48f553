package baremetal

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// leaseState is what operators can see of node leases: a stream can be up while its node's lease
// is not, and then the node's endpoints are taken out everywhere after the grace although the
// node shows as connected. Nothing else on the brain says so.
type leaseState struct {
	once   sync.Once
	lost   prometheus.Counter
	unheld prometheus.GaugeFunc
	mu     sync.Mutex
	// sessions are the lease records of the streams holding leases, by stream as sessions are;
	// a record appears at the first grant or loss.
	sessions map[context.Context]*leaseRecord
}

// leaseRecord is one stream's lease: held or not, and its last loss.
type leaseRecord struct {
	node    string
	held    bool
	lostAt  time.Time // the last loss; zero if none
	lastErr string
	losses  uint32
}

// LeaseTrouble is a connected node whose lease is not held right now, and why.
type LeaseTrouble struct {
	Node string
	Err  string
}

func (m *Membership) leaseStatus() *leaseState {
	ls := &m.leaseState
	ls.once.Do(func() {
		ls.sessions = map[context.Context]*leaseRecord{}
		ls.lost = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_node_lease_lost_total",
			Help: "Node leases lost (or not granted) while their agents' streams were up; each is re-established while the stream lasts.",
		})
		ls.unheld = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ganglion_node_leases_unheld",
			Help: "Connected agents whose node lease is lost right now: their nodes are taken down after --node-grace until it is back.",
		}, func() float64 { return float64(len(m.LeaseTroubles())) })
	})
	return ls
}

// Collectors are the membership's metrics, for the brain's registry.
func (m *Membership) Collectors() []prometheus.Collector {
	ls := m.leaseStatus()
	return []prometheus.Collector{ls.lost, ls.unheld}
}

// LeaseTroubles lists the connected nodes of this replica whose lease is not held right now.
func (m *Membership) LeaseTroubles() []LeaseTrouble {
	ls := m.leaseStatus()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	var out []LeaseTrouble
	for _, r := range ls.sessions {
		if !r.held {
			out = append(out, LeaseTrouble{Node: r.node, Err: r.lastErr})
		}
	}
	return out
}

// NodeLeases are the leases of the nodes connected to this replica, for `ganglionctl nodes`. A
// node with several streams (an old one not yet gone) is held if any of them holds it.
func (m *Membership) NodeLeases() map[string]*v1.NodeLease {
	ls := m.leaseStatus()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := map[string]*v1.NodeLease{}
	for _, r := range ls.sessions {
		l := r.proto()
		if prev := out[r.node]; prev != nil && !better(l, prev) {
			continue
		}
		out[r.node] = l
	}
	return out
}

// better says whether a describes a node's lease better than b: held beats lost, and between
// equals the more recent loss wins.
func better(a, b *v1.NodeLease) bool {
	if a.State != b.State {
		return a.State == v1.LeaseState_LEASE_STATE_HELD
	}
	return a.LostUnixSeconds > b.LostUnixSeconds
}

func (r *leaseRecord) proto() *v1.NodeLease {
	l := &v1.NodeLease{State: v1.LeaseState_LEASE_STATE_LOST, LastError: r.lastErr, Losses: r.losses}
	if r.held {
		l.State = v1.LeaseState_LEASE_STATE_HELD
	}
	if !r.lostAt.IsZero() {
		l.LostUnixSeconds = r.lostAt.Unix()
	}
	return l
}

// record returns stream's lease record, made for node if there is none yet; ls.mu is held.
func (ls *leaseState) record(stream context.Context, node string) *leaseRecord {
	r := ls.sessions[stream]
	if r == nil {
		r = &leaseRecord{node: node}
		ls.sessions[stream] = r
	}
	return r
}

// leaseLost records that the lease of stream's session is lost and says so once per loss: the
// store retries quietly until it is back.
func (m *Membership) leaseLost(stream context.Context, node string, err error) {
	ls := m.leaseStatus()
	ls.lost.Inc()
	ls.mu.Lock()
	r := ls.record(stream, node)
	r.held, r.lostAt, r.lastErr = false, time.Now(), err.Error()
	r.losses++
	ls.mu.Unlock()
	m.log().Error("node lease lost while its agent is connected; re-establishing it", "node", node, "err", err)
}

// leaseHeld records that the lease of stream's session is held (granted, or back after a loss).
func (m *Membership) leaseHeld(stream context.Context, node string) {
	ls := m.leaseStatus()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.record(stream, node).held = true
}

// leaseEnded forgets the lease of stream's session: the stream ended.
func (m *Membership) leaseEnded(stream context.Context) {
	ls := m.leaseStatus()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	delete(ls.sessions, stream)
}
