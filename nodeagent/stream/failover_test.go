package stream_test

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

func TestLosingABrainMovesOnlyItsAgents(t *testing.T) {
	ls := listeners(t, 3)
	brains := addrs(ls)
	rs := map[string]*replica{}
	for _, l := range ls {
		r := serve(t, l, true)
		rs[r.addr] = r
	}
	const n = 12
	agents, orders, opens := make([]*stream.Agent, n), make([][]string, n), make([]atomic.Int32, n)
	for i := range n {
		node := fmt.Sprintf("node-%d", i)
		orders[i] = stream.Order(node, brains)
		agents[i] = startAgent(t, node, brains, func(c *stream.Config) {
			c.DialOptions = append(c.DialOptions, grpc.WithChainStreamInterceptor(countStreams(&opens[i])))
		})
	}
	for i, a := range agents {
		testwait.Eventually(t, fmt.Sprintf("node-%d synced on its first choice", i), func() bool {
			st := a.Status()
			return st.Synced && st.Brain == orders[i][0]
		})
	}

	victim := orders[0][0]
	movers, before := map[string]int{}, make([]int32, n) // agents to come per survivor; streams per agent
	for i, o := range orders {
		before[i] = opens[i].Load()
		if o[0] == victim {
			movers[o[1]]++
		}
	}
	t.Logf("stopping %s: its agents go to %v", victim, movers)
	rs[victim].Stop()

	holdsThroughout(t, "only the lost brain's agents move",
		func() bool {
			for i, a := range agents {
				if o := orders[i]; o[0] == victim && !(a.Status().Brain == o[1] && rs[o[1]].holds(a, fmt.Sprintf("node-%d", i))) {
					return false
				}
			}
			return true
		},
		// The others keep their stream: not one new stream opened, not even to the same brain.
		func() bool {
			for i, a := range agents {
				if o := orders[i]; o[0] != victim && (a.Status().Brain != o[0] || opens[i].Load() != before[i]) {
					return false
				}
			}
			return true
		})
}

func TestAgentLeavesABrainThatNeverSyncsAndReturnsOnceItServes(t *testing.T) {
	const node = "node-1"
	ls := listeners(t, 2)
	order := stream.Order(node, addrs(ls))
	by := map[string]net.Listener{}
	for _, l := range ls {
		by[l.Addr().String()] = l
	}
	first := serve(t, by[order[0]], false) // up, but its sources never finish loading
	second := serve(t, by[order[1]], true)
	var checks atomic.Int32    // the agent's looks back at its first choice
	var snapshots atomic.Int32 // complete snapshots the agent applied (Config.OnSnapshot)
	a := startAgent(t, node, addrs(ls), func(c *stream.Config) {
		c.DialOptions = append(c.DialOptions, grpc.WithChainUnaryInterceptor(countHealthChecks(&checks)))
		c.OnSnapshot = func() { snapshots.Add(1) }
	})
	testwait.Eventually(t, "synced on the second brain", func() bool {
		st := a.Status()
		return st.Synced && st.Brain == second.addr && second.holds(a, node)
	})
	if n := snapshots.Load(); n != 1 {
		t.Fatalf("OnSnapshot called %d times for one complete snapshot", n)
	}

	from := checks.Load()
	holdsThroughout(t, "the agent stays on the second while the first is not serving",
		func() bool { return checks.Load() >= from+3 },
		func() bool { return a.Status().Brain == second.addr && first.snapshots() == 0 })

	first.MarkSynced()
	testwait.Eventually(t, "back on the first once it serves", func() bool {
		return a.Status().Brain == first.addr && first.holds(a, node) && snapshots.Load() == 2
	})
}

// countStreams counts the streams an agent opens.
func countStreams(n *atomic.Int32) grpc.StreamClientInterceptor {
	return func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, stream grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		n.Add(1)
		return stream(ctx, desc, cc, method, opts...)
	}
}

// countHealthChecks counts the health checks an agent makes.
func countHealthChecks(n *atomic.Int32) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if method == healthpb.Health_Check_FullMethodName {
			n.Add(1)
		}
		return invoke(ctx, method, req, reply, cc, opts...)
	}
}
