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
	// DeadAgentPing and DeadAgentTimeout are the brain's pings of an idle agent connection: a
	// node that vanishes without closing its connection (power lost, link cut) is found within
	// their sum, and its stream's end moves the addresses it answered ARP/NDP for to another
	// node (keepalived's VRRP finds a dead master in about 3 s). The cost is one small frame per
	// agent per second each way.
	DeadAgentPing    = time.Second
	DeadAgentTimeout = time.Second
	// MaxMessage bounds one message. The brain chunks snapshots well below it.
	MaxMessage = 64 << 20
	// window is the HTTP/2 flow-control window: large, so a snapshot is not throttled by round trips.
	window = 4 << 20
)

// Server returns the brain's server options.
func Server() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             PingInterval / 2,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: DeadAgentPing, Timeout: DeadAgentTimeout}),
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
