// Package grpcopts holds the gRPC settings the brain and the agent must agree on: keepalive (the
// server must permit the client's ping interval, or it closes the connection with
// ENHANCE_YOUR_CALM) and message and window sizes large enough for initial snapshots.
package grpcopts

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

const (
	// PingInterval is how often an idle agent pings the brain to find a dead peer.
	PingInterval = 20 * time.Second
	// PingTimeout is how long a ping may go unanswered before the connection is closed.
	PingTimeout = 10 * time.Second
	// DeadAgentAfter is how long an agent connection may stay silent before the brain closes
	// it: a node that vanishes without closing its connection (power lost, link cut) is found
	// within it, and its stream's end moves the addresses it answered ARP/NDP for to another node
	// (keepalived's VRRP finds a dead master in about 3 s). The brain pings an idle connection
	// every fifth of it and waits the rest for an answer; any frame read counts as one. The cost
	// is a small frame per agent per half second each way.
	DeadAgentAfter = 2 * time.Second
	// MaxMessage bounds one message. The brain chunks snapshots well below it.
	MaxMessage = 64 << 20
	// window is the HTTP/2 flow-control window: large, so a snapshot is not throttled by round trips.
	window = 4 << 20
)

// Server returns the brain's server options; deadAfter is DeadAgentAfter unless a test of many
// agents sharing a few cores needs more (0 means DeadAgentAfter).
func Server(deadAfter time.Duration) []grpc.ServerOption {
	if deadAfter <= 0 {
		deadAfter = DeadAgentAfter
	}
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             PingInterval / 2,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: deadAfter / 5, Timeout: deadAfter - deadAfter/5}),
		grpc.MaxRecvMsgSize(MaxMessage),
		grpc.MaxSendMsgSize(MaxMessage),
		grpc.InitialWindowSize(window),
		grpc.InitialConnWindowSize(window),
	}
}

// Client returns the agent's dial options.
func Client() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                PingInterval,
			Timeout:             PingTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(MaxMessage), grpc.MaxCallSendMsgSize(MaxMessage)),
		grpc.WithInitialWindowSize(window),
		grpc.WithInitialConnWindowSize(window),
	}
}
