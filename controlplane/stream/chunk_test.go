package stream_test

import (
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
)

// TestLargeUpdatesGoInChunks: with ChunkBytes below one port's size, the snapshot and a later
// update go one port per message, each sent only after the previous one's acknowledgement; only
// the snapshot's last chunk says complete, the session is synced only once it is acknowledged,
// removals come last, and the chunks add up to the node's state.
func TestLargeUpdatesGoInChunks(t *testing.T) {
	const n = 5
	hub, addr := serve(t, stream.Options{ChunkBytes: 1}, services(n))
	s := open(t, dial(t, addr)).hello(t, "n1")
	synced := func() bool { return hub.Sessions()["n1"].Synced }

	held := map[string]string{}
	// receive takes chunks until the last one (complete for a snapshot, the one with removals for
	// the update below), checking that each holds one whole port and that no port is split.
	receive := func(snapshot bool) (ports int) {
		t.Helper()
		seen := map[string]bool{}
		for i := 0; ; i++ {
			u := s.update(t)
			bases := map[string]bool{}
			for _, r := range u.Upserts {
				b, _ := resname.Split(r.Name)
				if seen[b] && !bases[b] {
					t.Fatalf("port %s split over chunks", b)
				}
				bases[b] = true
				held[r.Name] = r.Version
			}
			if len(bases) != 1 {
				t.Fatalf("chunk %d holds %d ports, want 1 (ChunkBytes 1)", i, len(bases))
			}
			for b := range bases {
				seen[b] = true
			}
			for _, name := range u.Removals {
				delete(held, name)
			}
			last := u.SnapshotComplete
			if !snapshot {
				last = len(u.Removals) > 0
			}
			if u.SnapshotComplete && !snapshot {
				t.Fatalf("update chunk %d says complete", i)
			}
			if snapshot && synced() {
				t.Fatalf("synced before chunk %d was acknowledged", i)
			}
			s.ack(t, u.Generation)
			if last {
				return len(seen)
			}
		}
	}
	if got := receive(true); got != n {
		t.Fatalf("snapshot of %d ports, want %d", got, n)
	}
	testwait.Eventually(t, "the session synced after the last chunk's ack", synced)
	checkHeld(t, hub, "n1", held)

	// Three services change address (upserts of three ports) and one goes (its removals).
	hub.Apply(time.Time{}, 2, func(e *compute.Engine) compute.Delta {
		var d compute.Delta
		for i := range 3 {
			svc := testService(i)
			svc.ClusterIPs[0] = svc.ClusterIPs[0].Next()
			d.Merge(e.SetService(svc))
		}
		d.Merge(e.DeleteService(testService(4).Key()))
		return d
	})
	if got := receive(false); got != 3 {
		t.Fatalf("update of %d ports, want 3", got)
	}
	checkHeld(t, hub, "n1", held)
}

// checkHeld compares what an agent holds with what the hub resolves for its node.
func checkHeld(t *testing.T, hub *stream.Hub, node string, held map[string]string) {
	t.Helper()
	want := map[string]string{}
	hub.View(func(e *compute.Engine) {
		e.ForEach(node, func(r *compute.Resource) { want[r.Name] = r.Version })
	})
	if len(held) != len(want) {
		t.Fatalf("agent holds %d resources, the hub wants %d", len(held), len(want))
	}
	for name, v := range want {
		if held[name] != v {
			t.Fatalf("%s: agent holds version %q, the hub wants %q", name, held[name], v)
		}
	}
}
