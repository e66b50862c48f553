package main

import (
	"testing"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestTheLeaseColumnTellsHeldFromLost: a connected node's lease is held, held after losses, or
// lost since a time, with the loss's error beside the stream's.
func TestTheLeaseColumnTellsHeldFromLost(t *testing.T) {
	lost := &v1.NodeLease{State: v1.LeaseState_LEASE_STATE_LOST, LostUnixSeconds: 1764561600, Losses: 1, LastError: "lease expired"}
	for _, c := range []struct {
		node        *v1.NodeStatus
		lease, last string
	}{
		{&v1.NodeStatus{}, "-", ""},
		{&v1.NodeStatus{Lease: &v1.NodeLease{State: v1.LeaseState_LEASE_STATE_HELD}}, "held", ""},
		{&v1.NodeStatus{Lease: &v1.NodeLease{State: v1.LeaseState_LEASE_STATE_HELD, LostUnixSeconds: 1764561600, Losses: 2, LastError: "old"}},
			"held (lost 2x, last 2025-12-01T04:00:00Z)", ""},
		{&v1.NodeStatus{Lease: lost}, "lost since 2025-12-01T04:00:00Z", "lease: lease expired"},
		{&v1.NodeStatus{Lease: lost, LastError: "stream closed"}, "lost since 2025-12-01T04:00:00Z", "stream closed; lease: lease expired"},
	} {
		if got := leaseColumn(c.node.Lease); got != c.lease {
			t.Errorf("lease %v: column %q, want %q", c.node.Lease, got, c.lease)
		}
		if got := lastError(c.node); got != c.last {
			t.Errorf("node %v: last error %q, want %q", c.node, got, c.last)
		}
	}
}
