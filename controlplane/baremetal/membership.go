package baremetal

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// leasePrefix is where agents' node leases live: leases/<node>, holding the node's NodeInfo.
const leasePrefix = "leases/"

// Membership turns agents' streams into node leases and their probe reports into stored health.
type Membership struct {
	Store *store.Store
	// LeaseTTL is how long a node stays registered after its agent's stream ends (default 10s).
	LeaseTTL time.Duration
	Log      *slog.Logger
}

// Hooks returns the stream hooks of bare-metal mode.
func (m *Membership) Hooks() stream.Hooks {
	return stream.Hooks{OnConnect: m.hold, OnHealth: m.record}
}

type leaseInfo struct {
	Addresses []string          `json:"addresses,omitempty"`
	Zone      string            `json:"zone,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// hold keeps the node's lease while its agent's stream is up. Several replicas holding leases for
// the same node overwrite one value: the last connection's lease wins, and any of them keeps it.
func (m *Membership) hold(ctx context.Context, hello *v1.Hello) {
	info := leaseInfo{Addresses: hello.GetNode().GetAddresses(), Zone: hello.GetNode().GetZone(), Labels: hello.GetNode().GetLabels()}
	b, err := json.Marshal(info)
	if err != nil {
		return
	}
	ttl := m.LeaseTTL
	if ttl == 0 {
		ttl = 10 * time.Second
	}
	if err := m.Store.HoldLease(ctx, leasePrefix+hello.NodeName, b, ttl); err != nil && ctx.Err() == nil {
		m.log().Error("node lease lost", "node", hello.NodeName, "err", err)
	}
}

// record stores probe results.
func (m *Membership) record(node string, results []*v1.EndpointHealth) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, r := range results {
		if err := RecordHealth(ctx, m.Store, r.Namespace, r.Service, r.Address, node, r.Ready); err != nil {
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
