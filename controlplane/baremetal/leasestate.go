package baremetal

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// leaseState is what operators can see of node leases: a stream can be up while its node's lease
// is not, and then the node's endpoints are taken out everywhere after the grace although the
// node shows as connected. Nothing else on the brain says so.
type leaseState struct {
	once     sync.Once
	lost     prometheus.Counter
	unheld   prometheus.GaugeFunc
	mu       sync.Mutex
	troubled map[context.Context]LeaseTrouble // by stream, as sessions are
}

// LeaseTrouble is a connected node whose lease is not held right now, and why.
type LeaseTrouble struct {
	Node string
	Err  string
}

func (m *Membership) leaseStatus() *leaseState {
	ls := &m.leaseState
	ls.once.Do(func() {
		ls.troubled = map[context.Context]LeaseTrouble{}
		ls.lost = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_node_lease_lost_total",
			Help: "Node leases lost (or not granted) while their agents' streams were up; each is re-established while the stream lasts.",
		})
		ls.unheld = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "ganglion_node_leases_unheld",
			Help: "Connected agents whose node lease is lost right now: their nodes are taken down after --node-grace until it is back.",
		}, func() float64 {
			ls.mu.Lock()
			defer ls.mu.Unlock()
			return float64(len(ls.troubled))
		})
	})
	return ls
}

// Collectors are the membership's metrics, for the brain's registry.
func (m *Membership) Collectors() []prometheus.Collector {
	ls := m.leaseStatus()
	return []prometheus.Collector{ls.lost, ls.unheld}
}

// LeaseTroubles lists the connected nodes of this replica whose lease is not held right now: what
// `ganglionctl nodes` should show once inspect's NodeStatus has a field for it.
func (m *Membership) LeaseTroubles() []LeaseTrouble {
	ls := m.leaseStatus()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	out := make([]LeaseTrouble, 0, len(ls.troubled))
	for _, t := range ls.troubled {
		out = append(out, t)
	}
	return out
}

// leaseLost records that the lease of stream's session is lost and says so once per loss: the
// store retries quietly until it is back.
func (m *Membership) leaseLost(stream context.Context, node string, err error) {
	ls := m.leaseStatus()
	ls.lost.Inc()
	ls.mu.Lock()
	ls.troubled[stream] = LeaseTrouble{Node: node, Err: err.Error()}
	ls.mu.Unlock()
	m.log().Error("node lease lost while its agent is connected; re-establishing it", "node", node, "err", err)
}

// leaseHeld records that the lease of stream's session is held again, or that the stream ended.
func (m *Membership) leaseHeld(stream context.Context) {
	ls := m.leaseStatus()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	delete(ls.troubled, stream)
}
