package baremetal

import (
	"context"
	"errors"
	"testing"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestALostLeaseShowsUntilItIsBack follows one node's lease through its streams: lost is shown
// with its time and error (and counted as unheld) until it is back, a second stream of the node
// that holds it wins, and an ended stream is forgotten.
func TestALostLeaseShowsUntilItIsBack(t *testing.T) {
	m := &Membership{}
	s1, end1 := context.WithCancel(context.Background())
	defer end1()
	m.leaseHeld(s1, "n1")
	if l := m.NodeLeases()["n1"]; l.GetState() != v1.LeaseState_LEASE_STATE_HELD || l.Losses != 0 {
		t.Fatalf("granted: %v, want held, never lost", l)
	}
	m.leaseLost(s1, "n1", errors.New("lease expired"))
	l := m.NodeLeases()["n1"]
	if l.GetState() != v1.LeaseState_LEASE_STATE_LOST || l.LostUnixSeconds == 0 || l.LastError != "lease expired" || l.Losses != 1 {
		t.Errorf("lost: %v, want lost with its time and error", l)
	}
	if tr := m.LeaseTroubles(); len(tr) != 1 || tr[0].Node != "n1" {
		t.Errorf("troubles %v, want n1", tr)
	}
	s2, end2 := context.WithCancel(context.Background())
	defer end2()
	m.leaseHeld(s2, "n1")
	if l := m.NodeLeases()["n1"]; l.GetState() != v1.LeaseState_LEASE_STATE_HELD {
		t.Errorf("with a second stream holding it: %v, want held", l)
	}
	m.leaseEnded(s2)
	m.leaseHeld(s1, "n1")
	if l := m.NodeLeases()["n1"]; l.GetState() != v1.LeaseState_LEASE_STATE_HELD || l.Losses != 1 || l.LastError == "" {
		t.Errorf("back: %v, want held, with the loss remembered", l)
	}
	m.leaseEnded(s1)
	if ls := m.NodeLeases(); len(ls) != 0 {
		t.Errorf("after the streams ended: %v, want none", ls)
	}
}
