package baremetal

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	clientv3 "go.etcd.io/etcd/client/v3"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// leaseUnder returns the lease the key ending in /path is under, and whether it is stored.
func leaseUnder(t *testing.T, st *store.Store, path string) (clientv3.LeaseID, bool) {
	t.Helper()
	resp, err := st.Client().Get(context.Background(), "", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), "/"+path) {
			return clientv3.LeaseID(kv.Lease), true
		}
	}
	return 0, false
}

// waitLeaseMoved waits until the key ending in /path is stored under a lease other than old, and
// returns that lease.
func waitLeaseMoved(t *testing.T, st *store.Store, path string, old clientv3.LeaseID) clientv3.LeaseID {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if id, ok := leaseUnder(t, st, path); ok && id != old {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not back under a new lease", path)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNodeLeaseComesBackWhileTheStreamLives: etcd ends a connected node's lease (as an outage
// longer than the TTL does; here it is revoked). While the stream lives, the brain grants a new
// lease and writes the node's registration and its session's failing health record again under
// it, counts and shows the loss while it lasts, and later reports go under the new lease.
func TestNodeLeaseComesBackWhileTheStreamLives(t *testing.T) {
	st, hub, m := healthWorld(t)
	s := connect(t, m, "n1")
	s.report(m, "n1", false, "10.1.0.5")
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)
	first, ok := leaseUnder(t, st, leasePrefix+"n1")
	if !ok {
		t.Fatal("n1 not registered")
	}
	if _, err := st.Client().Revoke(context.Background(), first); err != nil {
		t.Fatal(err)
	}
	next := waitLeaseMoved(t, st, leasePrefix+"n1", first)
	if id, ok := leaseUnder(t, st, healthPath("default", "web", "n1", "10.1.0.5")); !ok || id != next {
		t.Errorf("the failing record: stored %v under lease %x, want it under the node's new lease %x", ok, id, next)
	}
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)
	if s.ctx.Err() != nil {
		t.Fatal("the stream ended")
	}
	if lost := testutil.ToFloat64(m.leaseStatus().lost); lost < 1 {
		t.Errorf("ganglion_node_lease_lost_total = %v after a loss", lost)
	}
	for deadline := time.Now().Add(30 * time.Second); len(m.LeaseTroubles()) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the loss still shown once the lease is back: %+v", m.LeaseTroubles())
		}
	}
	// `ganglionctl nodes` shows it held again, and that it was lost, when and why.
	if l := m.NodeLeases()["n1"]; l.GetState() != v1.LeaseState_LEASE_STATE_HELD || l.Losses < 1 || l.LostUnixSeconds == 0 ||
		!strings.Contains(l.LastError, "lease") {
		t.Errorf("n1's lease for inspect: %v, want held after a loss, with its time and error", l)
	}

	// The session's handle writes under the new lease: its agent's next word still counts.
	s.report(m, "n1", true, "10.1.0.5")
	waitSummary(t, hub, "n2", "default/web/v4", bothUp)
	s.report(m, "n1", false, "10.1.0.5")
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)
	if id, _ := leaseUnder(t, st, healthPath("default", "web", "n1", "10.1.0.5")); id != next {
		t.Errorf("a report after the loss went under lease %x, want %x", id, next)
	}
	s.end()
	waitSummary(t, hub, "n2", "default/web/v4", bothUp) // and it still ends with the session
}
