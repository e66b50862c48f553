package baremetal

import (
	"context"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/ganglion-proxy/ganglion/store"
)

// waitLeases waits until etcd holds n leases: a session's lease has expired when the count drops.
func waitLeases(t *testing.T, st *store.Store, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := st.Client().Leases(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Leases) == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d leases, want %d", len(resp.Leases), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// recorded says whether node's health record for address of the web service is in etcd.
func recorded(t *testing.T, st *store.Store, node, address string) bool {
	t.Helper()
	resp, err := st.Client().Get(context.Background(), "", clientv3.WithFromKey(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), "/"+healthPath("default", "web", node, address)) {
			return true
		}
	}
	return false
}

// TestReportBeforeItsSessionWaitsForIt: during a handover the new stream's report can arrive
// before its session is registered (OnConnect runs on its own goroutine), while the old stream
// has not ended. Filed under the old session's lease, the record would go when that lease
// expires, and the agent, which reports only changes, would not say it again: the failing backend
// would come back. It must wait for, and live under, its own session's lease.
func TestReportBeforeItsSessionWaitsForIt(t *testing.T) {
	st, hub, m := healthWorld(t)
	old := connect(t, m, "n1")
	old.report(m, "n1", false, "10.1.0.5")
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)

	// The reconnected agent tells its results again, first thing.
	next := newStream(t)
	reported := make(chan struct{})
	go func() {
		next.report(m, "n1", false, "10.1.0.5")
		close(reported)
	}()
	// Long enough for a report looked up by node alone to be filed under the old session.
	time.Sleep(100 * time.Millisecond)
	next.connect(m, "n1")
	<-reported
	waitLeases(t, st, 2)

	old.end()
	waitLeases(t, st, 1) // the old session's lease has expired, with what was under it
	if !recorded(t, st, "n1", "10.1.0.5") {
		t.Fatal("the new session's report went with the old session's lease")
	}
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)
}

// TestLateReportEndsWithItsSession: a report the old stream sends after the new one started is
// the old session's word: it ends with the old session, not kept alive by the new one's lease.
func TestLateReportEndsWithItsSession(t *testing.T) {
	st, hub, m := healthWorld(t)
	old := connect(t, m, "n1")
	old.report(m, "n1", true, "10.1.0.5") // returns once the old session's lease is granted
	next := connect(t, m, "n1")
	next.report(m, "n1", true, "10.1.0.5")
	waitLeases(t, st, 2)

	old.report(m, "n1", false, "10.1.0.5")
	waitSummary(t, hub, "n2", "default/web/v4", onlySecond)
	old.end()
	waitSummary(t, hub, "n2", "default/web/v4", bothUp)
}

// TestReportFromAnEndedStreamIsDropped: a report whose stream has ended and whose session was
// never registered is not stored, and does not wait for a session that will not come.
func TestReportFromAnEndedStreamIsDropped(t *testing.T) {
	st, _, m := healthWorld(t)
	connect(t, m, "n1").report(m, "n1", true, "10.1.0.5")
	gone := newStream(t)
	gone.end()
	start := time.Now()
	gone.report(m, "n1", false, "10.1.0.5")
	if waited := time.Since(start); waited >= sessionWait {
		t.Errorf("a report of an ended stream waited %v for its session", waited)
	}
	if recorded(t, st, "n1", "10.1.0.5") {
		t.Error("a report of an ended stream was stored")
	}
}

// TestReportAfterItsStreamEndedIsDropped: the stream hands reports to the store on a worker, so
// one can come after its stream has ended while the session is still registered. It is the
// ended session's word and is not stored.
func TestReportAfterItsStreamEndedIsDropped(t *testing.T) {
	st, _, m := healthWorld(t)
	s := connect(t, m, "n1")
	s.report(m, "n1", true, "10.1.0.5") // returns once the session's lease is granted
	s.end()
	s.report(m, "n1", false, "10.1.0.5")
	if recorded(t, st, "n1", "10.1.0.5") {
		t.Error("a report that came after its stream ended was stored")
	}
}
