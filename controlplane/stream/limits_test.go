package stream_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
)

// TestStreamWithoutHelloIsCut: a peer that opens the stream and says nothing is cut once the
// hello timeout has passed, and counted; it holds nothing afterwards.
func TestStreamWithoutHelloIsCut(t *testing.T) {
	hub, addr := serve(t, stream.Options{HelloTimeout: 50 * time.Millisecond}, nil)
	s := open(t, dial(t, addr))
	s.ended(t, codes.DeadlineExceeded, "hello timeout")
	if n := testutil.ToFloat64(hub.Metrics().HelloTimeouts); n != 1 {
		t.Errorf("%v hello timeouts counted, want 1", n)
	}
	testwait.Eventually(t, "the stream no longer counted", func() bool { return testutil.ToFloat64(hub.Metrics().Open) == 0 })
}

// TestStreamsPerNodeAreCapped: a node may hold two streams (an agent that restarts overlaps its
// old one); the third is refused naming the limit, other nodes are not affected, and the room
// comes back when one of the node's streams ends.
func TestStreamsPerNodeAreCapped(t *testing.T) {
	hub, addr := serve(t, stream.Options{MaxStreamsPerNode: 2}, services(3))
	conn := dial(t, addr)
	first := open(t, conn).hello(t, "n1")
	first.update(t)
	open(t, conn).hello(t, "n1").update(t)

	open(t, conn).hello(t, "n1").ended(t, codes.ResourceExhausted, "at most 2 per node")
	if n := testutil.ToFloat64(hub.Metrics().Refused.WithLabelValues("node")); n != 1 {
		t.Errorf("%v refusals counted, want 1", n)
	}
	open(t, conn).hello(t, "n2").update(t)

	first.end()
	testwait.Eventually(t, "n1 admitted again once one of its streams ended", func() bool {
		_, err := open(t, conn).hello(t, "n1").recv(t)
		return err == nil
	})
}

// TestStreamsInTotalAreCapped: streams count from before their hello, so peers that say nothing
// cannot hold more than the total either; the room comes back when one ends.
func TestStreamsInTotalAreCapped(t *testing.T) {
	hub, addr := serve(t, stream.Options{MaxStreams: 3, HelloTimeout: 10 * time.Minute}, services(3))
	conn := dial(t, addr)
	open(t, conn).hello(t, "n1").update(t)
	silent := open(t, conn)
	open(t, conn)
	served := func() float64 { return testutil.ToFloat64(hub.Metrics().Open) }
	testwait.Eventually(t, "three streams served", func() bool { return served() == 3 })

	open(t, conn).hello(t, "n4").ended(t, codes.ResourceExhausted, "at most 3 in total")
	if n := testutil.ToFloat64(hub.Metrics().Refused.WithLabelValues("total")); n != 1 {
		t.Errorf("%v refusals counted, want 1", n)
	}

	silent.end()
	testwait.Eventually(t, "the silent stream no longer counted", func() bool { return served() == 2 })
	open(t, conn).hello(t, "n5").update(t)
}

// TestSilentStreamsCountAgainstTheirNode: a node's credentials name it, so its streams count
// against its share from the start: a node cannot hold more streams by never saying hello.
func TestSilentStreamsCountAgainstTheirNode(t *testing.T) {
	id := &auth.Identity{Role: pki.RoleNode, Name: "n1", Via: "x509"}
	hub, addr := serveAs(t, stream.Options{MaxStreamsPerNode: 2, HelloTimeout: 10 * time.Minute}, nil, id)
	conn := dial(t, addr)
	open(t, conn)
	open(t, conn)
	testwait.Eventually(t, "two silent streams served", func() bool { return testutil.ToFloat64(hub.Metrics().Open) == 2 })
	open(t, conn).ended(t, codes.ResourceExhausted, `node "n1" has 2 streams open, at most 2 per node`)
}
