// Package stream is the agent's side of the brain -> agent stream: it says what it holds, applies
// what it is sent through the dataplane, acknowledges it, and keeps its last good state while no
// brain is reachable.
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ganglion-proxy/ganglion/internal/grpcopts"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Config configures an Agent.
type Config struct {
	NodeName     string
	AgentVersion string
	// Brains are the addresses of the brain replicas; the agent uses one at a time and moves to
	// the next when it fails or is behind.
	Brains    []string
	Dataplane dataplane.Dataplane
	Log       *slog.Logger
	// DialOptions are added to the defaults (plaintext, keepalive, sizes).
	DialOptions []grpc.DialOption
	// Node describes this node to the brain (bare-metal membership).
	Node *v1.NodeInfo
	// Prober, when set, probes this node's endpoints as the brain's probe sets say; its results
	// go to the brain.
	Prober Prober
	// OnApply, when set, hears of every change applied to the dataplane, with its duration and the
	// bases that failed: node-local servers (health checks, metrics) follow the state through it.
	OnApply func(c dataplane.Change, took time.Duration, failed map[string]error)
	// BackoffMin and BackoffMax bound the jittered exponential backoff between attempts
	// (defaults 200ms and 10s).
	BackoffMin, BackoffMax time.Duration
}

// Prober is what the agent needs of the health checker.
type Prober interface {
	Update([]*v1.ProbeSet)
	Results() []*v1.EndpointHealth
}

// Agent keeps one node's dataplane in line with the brain.
type Agent struct {
	cfg Config

	mu       sync.Mutex // guards everything below
	state    held
	revision uint64 // highest source revision applied
	synced   bool   // a complete snapshot has been applied at least once
	brain    string // the address of the current stream, "" when disconnected
	lastSync time.Time
	down     time.Time // when the last stream ended

	sendMu sync.Mutex // one sender at a time on the current stream
	stream v1.AgentService_StreamClient
}

// New returns an agent with an empty state.
func New(cfg Config) *Agent {
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 200 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Agent{cfg: cfg, state: held{}}
}

// Status is the agent's view of its sync.
type Status struct {
	// Brain is the address of the brain whose updates the agent is applying; "" when disconnected.
	Brain     string
	Synced    bool
	Resources int
	Revision  uint64
	LastSync  time.Time
	// DisconnectedSince is when the last stream ended (zero if none has).
	DisconnectedSince time.Time
}

// Status returns the agent's sync status.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	return Status{Brain: a.brain, Synced: a.synced, Resources: len(a.state), Revision: a.revision, LastSync: a.lastSync, DisconnectedSince: a.down}
}

// Held returns a copy of the held resource versions by name.
func (a *Agent) Held() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, len(a.state))
	for n, r := range a.state {
		out[n] = r.Version
	}
	return out
}

// Run streams from the brains until ctx ends. The dataplane is left as it is whenever no brain
// is reachable: working rules are never flushed for want of a brain.
func (a *Agent) Run(ctx context.Context) error {
	backoff := a.cfg.BackoffMin
	for i := 0; ; i++ {
		addr := a.cfg.Brains[i%len(a.cfg.Brains)]
		start := time.Now()
		err := a.session(ctx, addr)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		a.cfg.Log.Warn("brain stream ended", "brain", addr, "err", err)
		if time.Since(start) > time.Minute {
			backoff = a.cfg.BackoffMin // it worked for a while: this is a new failure
		}
		// Full jitter keeps a thousand agents that lost the same brain from coming back together.
		wait := time.Duration(rand.Int64N(int64(backoff))) + a.cfg.BackoffMin/2
		backoff = min(2*backoff, a.cfg.BackoffMax)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// session runs one stream to one brain.
func (a *Agent) session(ctx context.Context, addr string) error {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, grpcopts.Client()...)
	conn, err := grpc.NewClient(addr, append(opts, a.cfg.DialOptions...)...)
	if err != nil {
		return fmt.Errorf("dial %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := v1.NewAgentServiceClient(conn).Stream(ctx)
	if err != nil {
		return fmt.Errorf("open stream to %s: %w", addr, err)
	}
	a.mu.Lock()
	digests := a.state.digests()
	hello := &v1.Hello{NodeName: a.cfg.NodeName, AgentVersion: a.cfg.AgentVersion, HeldDigests: digests, MinRevision: a.revision, Node: a.cfg.Node}
	a.mu.Unlock()
	if err := a.send(stream, &v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: hello}}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	a.sendMu.Lock()
	a.stream = stream
	a.sendMu.Unlock()
	defer func() {
		a.sendMu.Lock()
		a.stream = nil
		a.sendMu.Unlock()
		a.mu.Lock()
		if a.brain != "" {
			a.down = time.Now()
		}
		a.brain = ""
		a.mu.Unlock()
	}()
	// Results changed while no brain was listening are told again.
	if a.cfg.Prober != nil {
		if results := a.cfg.Prober.Results(); len(results) > 0 {
			a.ReportHealth(results...)
		}
	}
	for {
		resp, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return errors.New("brain closed the stream")
		}
		if err != nil {
			return fmt.Errorf("receive from %s: %w", addr, err)
		}
		var reply *v1.StreamRequest
		switch m := resp.Message.(type) {
		case *v1.StreamResponse_HeldRequest:
			a.mu.Lock()
			list := a.state.list(m.HeldRequest.Buckets, len(digests))
			a.mu.Unlock()
			reply = &v1.StreamRequest{Message: &v1.StreamRequest_HeldList{HeldList: &v1.HeldList{Resources: list}}}
		case *v1.StreamResponse_Update:
			ack := a.apply(ctx, addr, m.Update)
			reply = &v1.StreamRequest{Message: &v1.StreamRequest_Ack{Ack: ack}}
		default:
			return fmt.Errorf("unexpected message %T", resp.Message)
		}
		if err := a.send(stream, reply); err != nil {
			return fmt.Errorf("send: %w", err)
		}
	}
}

func (a *Agent) send(s v1.AgentService_StreamClient, m *v1.StreamRequest) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return s.Send(m)
}

// ReportHealth tells the brain of probe results. Without a stream they are dropped here: the
// prober keeps them, and they are told again on the next connection.
func (a *Agent) ReportHealth(results ...*v1.EndpointHealth) {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	if a.stream == nil {
		return
	}
	if err := a.stream.Send(&v1.StreamRequest{Message: &v1.StreamRequest_HealthReport{HealthReport: &v1.HealthReport{Endpoints: results}}}); err != nil {
		a.cfg.Log.Warn("health report not sent", "err", err)
	}
}

// apply applies one update and returns its acknowledgement.
func (a *Agent) apply(ctx context.Context, addr string, u *v1.Update) *v1.Ack {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.brain = addr
	rejections := applyUpdate(a.state, func(c dataplane.Change) map[string]error {
		start := time.Now()
		failed := a.cfg.Dataplane.Apply(ctx, c)
		if a.cfg.OnApply != nil {
			a.cfg.OnApply(c, time.Since(start), failed)
		}
		return failed
	}, u)
	for _, r := range rejections {
		a.cfg.Log.Warn("resource rejected", "name", r.Name, "version", r.Version, "err", r.Error)
	}
	a.revision = max(a.revision, u.SourceRevision)
	if a.cfg.Prober != nil {
		a.cfg.Prober.Update(a.state.probeSets())
	}
	if u.SnapshotComplete {
		// The state is now exactly what the brain wants: whatever else the dataplane owns, from an
		// earlier run or a missed removal, can go.
		if err := a.cfg.Dataplane.Prune(ctx, a.state.bases()); err != nil {
			a.cfg.Log.Error("prune after snapshot", "err", err)
		}
		a.synced = true
	}
	a.lastSync = time.Now()
	return &v1.Ack{Generation: u.Generation, Rejections: rejections}
}
