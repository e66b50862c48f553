package stream

import (
	"context"
	"time"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Options tune the stream. Zero values take the defaults.
type Options struct {
	// MaxDelay is the longest a change waits before the brain sends it (default 50ms): a change
	// that comes MaxDelay or longer after the last send goes out at once; one that comes sooner
	// waits, merged with whatever else comes, until MaxDelay after the last send. Under sustained
	// churn every agent thus gets at most one update per MaxDelay, whatever the rate of changes.
	// Sending each change as it came (a 10 ms quiet window) let the agents' round trips set the
	// pace, and with a thousand agents the CPU ran out; waiting longer makes every update older.
	// Soak of 1,000 agents at 100 changes/s, 3 minutes, p99: 473 ms before; 453 ms at 100 ms,
	// 343 ms at 50 ms, 338 ms at 25 ms with 52 updates later than a second (saturated).
	MaxDelay time.Duration
	// StallTimeout cancels a stream whose update has been neither sent nor acknowledged in that
	// time (default 60s): gRPC's Send has no timeout, and an agent that stopped reading or applying
	// would otherwise hold its goroutines and buffers forever. It reconnects and resumes.
	StallTimeout time.Duration
	// SnapshotSlots bounds how many initial differences are computed and sent at once (default 64),
	// so a reconnect storm cannot take all the brain's memory.
	SnapshotSlots int
	// SnapshotSlotHold bounds how long one stream keeps its snapshot slot (default 5s), from when
	// it gets it to when its agent has acknowledged the whole snapshot. A stream past it goes on
	// (its stall watchdog still runs) but lets its slot go: otherwise SnapshotSlots agents that
	// never acknowledge hold every slot until StallTimeout and no other agent gets its first sync.
	SnapshotSlotHold time.Duration
	// HelloTimeout cuts a stream whose first message has not arrived in that time (default 10s):
	// until then the peer has said nothing, yet holds a goroutine and counts against MaxStreams.
	HelloTimeout time.Duration
	// MaxStreams bounds the streams served at once, said hello or not (default 10,000);
	// MaxStreamsPerNode bounds those of one node (default 2: an agent that restarts opens its
	// new stream before the brain has seen the old one end). Streams past either are refused.
	MaxStreams, MaxStreamsPerNode int
	// HealthBacklog bounds how many endpoints' health results one stream keeps waiting for the
	// OnHealth hook (default 4096). Results of the same endpoint replace each other, so it fills
	// only when a node probes more endpoints than that; the stream's receive loop then waits.
	HealthBacklog int
	// ChunkBytes splits updates larger than this (default 1 MiB).
	ChunkBytes int
	// Hooks let a source act on what agents say; nil hooks do nothing.
	Hooks Hooks
	// BehindWait is how long a replica waits to catch up with an agent that has seen a newer source
	// revision before it turns the agent away (default 5s).
	BehindWait time.Duration
}

// Hooks are called by agents' streams.
type Hooks struct {
	// OnConnect runs while an agent's stream is up, until ctx ends: bare-metal membership holds a
	// lease for the node meanwhile.
	OnConnect func(ctx context.Context, hello *v1.Hello)
	// OnHealth receives probe results, already checked to be of endpoints the node was told to
	// probe. ctx is the very context OnConnect got for the same stream: it names the session that
	// sent the report (a node's new stream may start before its old one has ended, so the node
	// alone does not), and it ends with that stream. It runs on a worker of its own per stream,
	// one call at a time, so it may be slow: results that arrive meanwhile wait, the newest of
	// each endpoint replacing older ones, and go in the next call.
	OnHealth func(ctx context.Context, node string, results []*v1.EndpointHealth)
}

func (o *Options) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&o.MaxDelay, 50*time.Millisecond)
	set(&o.StallTimeout, 60*time.Second)
	set(&o.BehindWait, 5*time.Second)
	set(&o.SnapshotSlotHold, 5*time.Second)
	set(&o.HelloTimeout, 10*time.Second)
	setInt := func(n *int, v int) {
		if *n == 0 {
			*n = v
		}
	}
	setInt(&o.SnapshotSlots, 64)
	setInt(&o.ChunkBytes, 1<<20)
	setInt(&o.MaxStreams, 10_000)
	setInt(&o.MaxStreamsPerNode, 2)
	setInt(&o.HealthBacklog, 4096)
}
