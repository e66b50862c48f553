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
	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/nodeagent/announce"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Config configures an Agent.
type Config struct {
	NodeName     string
	AgentVersion string
	// Brains are the addresses of the brain replicas. The agent uses one at a time, in its own
	// order (Order: the same list spreads nodes over replicas), moves to the next when one fails,
	// is behind or does not serve it in time, and returns to the ones it prefers when they serve.
	Brains    []string
	Dataplane dataplane.Dataplane
	Log       *slog.Logger
	// DialOptions are added to the defaults (plaintext, keepalive, sizes). A codec they force is
	// not used for the stream: the agent reads the brain's messages itself (see wire.go).
	DialOptions []grpc.DialOption
	// Share, when set, is a table the agents of one process hold their resources through, one
	// copy of each version between them (test fleets); nil for an agent on its own node.
	Share *Share
	// Node describes this node to the brain (bare-metal membership).
	Node *v1.NodeInfo
	// Prober, when set, probes this node's endpoints as the brain's probe sets say; its results
	// go to the brain.
	Prober Prober
	// Capabilities are announced in the hello: resname.CapabilityDNS asks for DNS records.
	Capabilities []string
	// DNS, when set, follows the held DNS records (the brain sends them only to an agent whose
	// Capabilities include resname.CapabilityDNS).
	DNS DNSRecords
	// Announcer, when set, follows the node's announcements of service addresses (ARP/NDP, BGP).
	Announcer interface{ Announce(announce.Want) }
	// OnSnapshot, when set, is called after a complete snapshot has been applied.
	OnSnapshot func()
	// OnApply, when set, hears of every change applied to the dataplane, with its duration and the
	// bases that failed: node-local servers (health checks, metrics) follow the state through it.
	OnApply func(c dataplane.Change, took time.Duration, failed map[string]error)
	// BackoffMin and BackoffMax bound the jittered exponential backoff between attempts
	// (defaults 200ms and 10s).
	BackoffMin, BackoffMax time.Duration
	// FirstUpdateTimeout bounds how long a brain may hold a new stream before its first message
	// (default 30s). A brain says nothing until its sources are synced, it has read as far as the
	// agent has applied and it has a snapshot slot free, so a replica that is up but not ready
	// would otherwise keep the agent for ever; past the bound the agent tries its next brain.
	// With a single brain there is nowhere else to go, and the bound is not applied.
	FirstUpdateTimeout time.Duration
	// ReturnAfter is how long the agent stays on a fallback brain before it checks whether one
	// it prefers is serving again, jittered over [ReturnAfter/2, 3*ReturnAfter/2) so that the
	// agents of a returning replica come back spread out, not all at once (default 1m).
	ReturnAfter time.Duration
}

// Prober is what the agent needs of the health checker.
type Prober interface {
	Update([]*v1.ProbeSet)
	Results() []*v1.EndpointHealth
}

// DNSRecords is what the agent needs of the DNS server: the whole set of records on every change.
type DNSRecords interface {
	SetRecords([]*v1.DNSRecords)
}

// Agent keeps one node's dataplane in line with the brain.
type Agent struct {
	cfg Config

	mu       sync.Mutex // guards everything below
	state    *held
	revision uint64 // highest source revision applied
	synced   bool   // a complete snapshot has been applied at least once
	brain    string // the address of the current stream, "" when disconnected
	lastSync time.Time
	down     time.Time // when the last stream ended

	sendMu sync.Mutex // one sender at a time on the current stream
	stream grpc.ClientStream
}

// New returns an agent with an empty state.
func New(cfg Config) *Agent {
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 200 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.FirstUpdateTimeout == 0 {
		cfg.FirstUpdateTimeout = 30 * time.Second
	}
	if cfg.ReturnAfter == 0 {
		cfg.ReturnAfter = time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Agent{cfg: cfg, state: newHeld(cfg.Share)}
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
	return Status{Brain: a.brain, Synced: a.synced, Resources: a.state.len(), Revision: a.revision, LastSync: a.lastSync, DisconnectedSince: a.down}
}

// Held returns a copy of the held resource versions by name.
func (a *Agent) Held() map[string]string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]string, a.state.len())
	for n, r := range a.state.records {
		out[n] = r.version
	}
	return out
}

// HeldResource returns the held resource of that name, decoded; nil when none is held.
func (a *Agent) HeldResource(name string) (*v1.Resource, error) {
	a.mu.Lock()
	r := a.state.records[name]
	a.mu.Unlock()
	if r == nil {
		return nil, nil
	}
	return r.resource(name)
}

// Run streams from the brains until ctx ends. The dataplane is left as it is whenever no brain
// is reachable: working rules are never flushed for want of a brain.
func (a *Agent) Run(ctx context.Context) error {
	order := Order(a.cfg.NodeName, a.cfg.Brains)
	if len(order) == 0 {
		return errors.New("no brain to connect to")
	}
	backoff := a.cfg.BackoffMin
	at := 0 // the index in order of the brain to try now
	for {
		start := time.Now()
		err := a.session(ctx, order, at)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var back returnTo
		if errors.As(err, &back) {
			// A brain this node prefers serves again: go straight there, no backoff.
			a.cfg.Log.Info("returning to a preferred brain", "from", order[at], "to", order[back.index])
			at, backoff = back.index, a.cfg.BackoffMin
			continue
		}
		a.cfg.Log.Warn("brain stream ended", "brain", order[at], "err", err)
		if !errors.Is(err, errNotServed) && time.Since(start) > time.Minute {
			backoff = a.cfg.BackoffMin // it worked for a while: this is a new failure
		}
		// The next in this node's own order: the agents of a lost replica spread over the others.
		at = (at + 1) % len(order)
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

// dial returns a connection to a brain with the agent's options.
func (a *Agent) dial(addr string) (*grpc.ClientConn, error) {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, grpcopts.Client()...)
	conn, err := grpc.NewClient(addr, append(opts, a.cfg.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	return conn, nil
}

// session runs one stream to the brain order[at]. It ends with errNotServed when the brain does
// not answer in time, and with a returnTo when a brain earlier in order serves again.
func (a *Agent) session(ctx context.Context, order []string, at int) error {
	addr := order[at]
	conn, err := a.dial(addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	// Updates are applied under the caller's context: ending the stream to move back must not
	// abort an apply halfway.
	applyCtx := ctx
	ctx, end := context.WithCancelCause(ctx)
	defer end(nil)
	served := make(chan struct{}) // closed on the brain's first message
	go a.watch(ctx, end, order, at, served)
	// why says why the watch ended the stream, when it did, rather than "canceled".
	why := func(err error) error {
		if cause := context.Cause(ctx); ctx.Err() != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
		return err
	}
	stream, err := conn.NewStream(ctx, &v1.AgentService_ServiceDesc.Streams[0], v1.AgentService_Stream_FullMethodName,
		grpc.ForceCodecV2(newCodec()))
	if err != nil {
		return why(fmt.Errorf("open stream to %s: %w", addr, err))
	}
	a.mu.Lock()
	digests := a.state.digests()
	hello := &v1.Hello{NodeName: a.cfg.NodeName, AgentVersion: a.cfg.AgentVersion, HeldDigests: digests, MinRevision: a.revision, Node: a.cfg.Node, Capabilities: a.cfg.Capabilities}
	a.mu.Unlock()
	if err := a.send(stream, &v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: hello}}); err != nil {
		return why(fmt.Errorf("send hello: %w", err))
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
	for first := true; ; first = false {
		var resp response
		err := stream.RecvMsg(&resp)
		if errors.Is(err, io.EOF) {
			return errors.New("brain closed the stream")
		}
		if err != nil {
			return why(fmt.Errorf("receive from %s: %w", addr, err))
		}
		if first {
			close(served)
		}
		var reply *v1.StreamRequest
		switch {
		case resp.heldRequest != nil:
			a.mu.Lock()
			list := a.state.list(resp.heldRequest.Buckets, len(digests))
			a.mu.Unlock()
			reply = &v1.StreamRequest{Message: &v1.StreamRequest_HeldList{HeldList: &v1.HeldList{Resources: list}}}
		case resp.update != nil:
			ack := a.apply(applyCtx, addr, resp.update)
			reply = &v1.StreamRequest{Message: &v1.StreamRequest_Ack{Ack: ack}}
		default:
			return errors.New("unexpected message: neither an update nor a held request")
		}
		if err := a.send(stream, reply); err != nil {
			return why(fmt.Errorf("send: %w", err))
		}
	}
}

func (a *Agent) send(s grpc.ClientStream, m *v1.StreamRequest) error {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	return s.SendMsg(m)
}

// ReportHealth tells the brain of probe results. Without a stream they are dropped here: the
// prober keeps them, and they are told again on the next connection.
func (a *Agent) ReportHealth(results ...*v1.EndpointHealth) {
	a.sendMu.Lock()
	defer a.sendMu.Unlock()
	if a.stream == nil {
		return
	}
	if err := a.stream.SendMsg(&v1.StreamRequest{Message: &v1.StreamRequest_HealthReport{HealthReport: &v1.HealthReport{Endpoints: results}}}); err != nil {
		a.cfg.Log.Warn("health report not sent", "err", err)
	}
}

// apply applies one update and returns its acknowledgement.
func (a *Agent) apply(ctx context.Context, addr string, u *update) *v1.Ack {
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
	a.revision = max(a.revision, u.revision)
	if a.cfg.Prober != nil && touches(u, resname.KindProbes) {
		a.cfg.Prober.Update(a.state.probeSets())
	}
	if a.cfg.DNS != nil && touches(u, resname.KindDNS) {
		a.cfg.DNS.SetRecords(a.state.dnsRecords())
	}
	// Announcements wait for the first whole state: a restarted agent that announced part of it
	// would have its peers drop the routes that graceful restart kept for it.
	if a.cfg.Announcer != nil && (u.complete || a.synced && touches(u, resname.KindAnnounce, resname.KindBGP)) {
		a.cfg.Announcer.Announce(a.state.announcements())
	}
	if u.complete {
		// The state is now exactly what the brain wants: whatever else the dataplane owns, from an
		// earlier run or a missed removal, can go.
		if err := a.cfg.Dataplane.Prune(ctx, a.state.bases()); err != nil {
			a.cfg.Log.Error("prune after snapshot", "err", err)
		}
		a.synced = true
		if a.cfg.OnSnapshot != nil {
			a.cfg.OnSnapshot()
		}
	}
	a.lastSync = time.Now()
	return &v1.Ack{Generation: u.generation, Rejections: rejections}
}
