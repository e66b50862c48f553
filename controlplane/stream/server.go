package stream

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/internal/digest"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// streamMethod names the stream in refusals.
const streamMethod = "/ganglion.v1.AgentService/Stream"

// maxBuckets bounds the digests an agent may send.
const maxBuckets = 1 << 16

// Server implements the AgentService over a Hub.
type Server struct {
	v1.UnimplementedAgentServiceServer
	hub *Hub
	log *slog.Logger
}

var _ v1.AgentServiceServer = (*Server)(nil)

// NewServer returns the AgentService of hub.
func NewServer(hub *Hub, log *slog.Logger) *Server { return &Server{hub: hub, log: log} }

// ServerOptions are the options a grpc.Server needs to carry this service: the codec that sends
// pre-encoded frames.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(newCodec())}
}

// Stream serves one agent: hello, initial difference, then updates until the agent goes away.
func (srv *Server) Stream(stream v1.AgentService_StreamServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	hello, leave, err := srv.admit(ctx, stream)
	if err != nil {
		return err
	}
	defer leave()
	select {
	case <-srv.hub.Synced():
	case <-ctx.Done():
		return ctx.Err()
	}
	if hello.MinRevision > 0 && !srv.hub.waitRevision(ctx, hello.MinRevision, srv.hub.opts.BehindWait) {
		return status.Errorf(codes.Unavailable, "replica behind: it has read source revision %d, the agent has applied %d",
			srv.hub.Revision(), hello.MinRevision)
	}
	log := srv.log.With("node", hello.NodeName)
	if hook := srv.hub.opts.Hooks.OnConnect; hook != nil {
		go hook(ctx, hello)
	}
	s := newSession(hello.NodeName, hello.AgentVersion)
	s.dns = slices.Contains(hello.Capabilities, resname.CapabilityDNS)
	// Registered before the difference is computed, so no change made meanwhile is missed.
	srv.hub.register(s)
	defer srv.hub.unregister(s)

	c := &conn{srv: srv, stream: stream, s: s, stalled: make(chan struct{}), healthq: newHealthQueue(srv.hub.opts.HealthBacklog)}
	c.watch = time.AfterFunc(time.Hour, c.stall)
	c.watch.Stop()
	defer c.watch.Stop()
	if hook := srv.hub.opts.Hooks.OnHealth; hook != nil {
		go c.healthq.run(ctx, func(rs []*v1.EndpointHealth) { hook(ctx, s.node, rs) })
	}
	slot, err := srv.hub.acquireSlot(ctx)
	if err != nil {
		return err
	}
	defer slot.release()
	c.snapshotDone = slot.release
	upserts, removals, err := c.initialDiff(ctx, hello)
	if err != nil {
		return err
	}
	log.Debug("agent connected", "upserts", len(upserts), "removals", len(removals))

	errs := make(chan error, 2)
	go func() { errs <- c.receive(ctx) }()
	go func() { errs <- c.send(ctx, upserts, removals) }()
	select {
	case err := <-errs:
		if err != nil && !errors.Is(err, context.Canceled) {
			log.Info("agent stream ended", "err", err)
		}
		return err
	case <-c.stalled:
		srv.hub.metrics.Stalled.Inc()
		log.Warn("agent stream cancelled: an update was not acknowledged in time", "timeout", srv.hub.opts.StallTimeout)
		return status.Errorf(codes.DeadlineExceeded, "update neither sent nor acknowledged within %s", srv.hub.opts.StallTimeout)
	}
}

// conn is the state of one stream's handler.
type conn struct {
	srv         *Server
	stream      v1.AgentService_StreamServer
	s           *session
	gen         uint64
	queue       []chunk // chunks of the update being sent, not yet sent
	watch       *time.Timer
	stalled     chan struct{}
	stalledOnce sync.Once
	healthq     *healthQueue
	// snapshotDone lets the snapshot slot go once the initial difference is acknowledged.
	snapshotDone func()
}

// initialDiff computes what the agent lacks. An agent that holds nothing gets everything; one
// that holds something is asked for the contents of only the digest buckets that differ. Its
// digests are compared with exactly what it is to hold: DNS records count only for an agent
// that serves DNS, so one that does not matches without them.
func (c *conn) initialDiff(ctx context.Context, hello *v1.Hello) ([]*compute.Resource, []string, error) {
	var state []*compute.Resource
	c.srv.hub.View(func(e *compute.Engine) {
		add := func(r *compute.Resource) { state = append(state, r) }
		e.ForEach(c.s.node, add)
		if c.s.dns {
			e.ForEachDNS(add)
		}
	})
	n := len(hello.HeldDigests)
	if n == 0 {
		return state, nil, nil
	}
	mine := digest.New(n)
	for _, r := range state {
		mine.Add(r.Name, r.Version)
	}
	differ := mine.Differ(hello.HeldDigests)
	if len(differ) == 0 {
		return nil, nil, nil
	}
	c.watch.Reset(c.srv.hub.opts.StallTimeout)
	defer c.watch.Stop()
	if err := c.stream.SendMsg(heldRequestFrame(differ)); err != nil {
		return nil, nil, err
	}
	req, err := c.stream.Recv()
	for err == nil && c.health(ctx, req) {
		req, err = c.stream.Recv()
	}
	if err != nil {
		return nil, nil, err
	}
	list := req.GetHeldList()
	if list == nil {
		return nil, nil, status.Error(codes.InvalidArgument, "expected a held_list after a held_request")
	}
	asked := make(map[int]bool, len(differ))
	for _, b := range differ {
		asked[int(b)] = true
	}
	held := make(map[string]string, len(list.Resources))
	for _, r := range list.Resources {
		held[r.Name] = r.Version
	}
	var upserts []*compute.Resource
	wanted := map[string]bool{}
	for _, r := range state {
		if !asked[digest.Bucket(r.Name, n)] {
			continue
		}
		wanted[r.Name] = true
		if held[r.Name] != r.Version {
			upserts = append(upserts, r)
		}
	}
	var removals []string
	for name := range held {
		if !wanted[name] {
			removals = append(removals, name)
		}
	}
	return upserts, removals, nil
}

// send delivers the initial difference, then every change, one acknowledged chunk at a time.
// It sleeps on the session's kick, which comes only when there is something to send and nothing
// in flight (session.markDirty, session.onAck).
func (c *conn) send(ctx context.Context, upserts []*compute.Resource, removals []string) error {
	c.srv.hub.metrics.Snapshots.Inc()
	c.queue = c.chunks(upserts, removals, true, time.Time{})
	for {
		// Only this goroutine sets an update in flight: once none is, none appears meanwhile.
		if !c.s.busy() {
			if len(c.queue) == 0 {
				if dirty := c.s.takeDirty(); len(dirty) > 0 {
					var ups []*compute.Resource
					var rems []string
					var trigger time.Time
					c.srv.hub.View(func(e *compute.Engine) {
						ups, rems, trigger = pending(e, c.s.node, dirty, c.s.isRejected)
					})
					c.queue = c.chunks(ups, rems, false, trigger)
				}
			}
			if len(c.queue) > 0 {
				if err := c.sendChunk(); err != nil {
					return err
				}
			}
		}
		select {
		case <-c.s.kick:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func base(r *compute.Resource) string {
	b, _ := resname.Split(r.Name)
	return b
}

// chunk is one message of an update: at most ChunkBytes of upserts (more only when a single
// port's resources exceed it); removals travel in the last chunk: make before break.
type chunk struct {
	upserts  []*compute.Resource
	removals []string
	complete bool
	trigger  time.Time
}

// chunks splits an update. An update with nothing in it is no chunk, unless it completes the
// initial difference (an agent with nothing to receive still learns that it is synced).
func (c *conn) chunks(upserts []*compute.Resource, removals []string, complete bool, trigger time.Time) []chunk {
	if len(upserts)+len(removals) == 0 && !complete {
		return nil
	}
	slices.SortFunc(upserts, func(a, b *compute.Resource) int { return cmp.Compare(a.Name, b.Name) })
	slices.Sort(removals)
	var out []chunk
	for {
		n, size := 0, 0
		for ; n < len(upserts); n++ {
			// A port's resources stay in one chunk, so the agent never programs half a port.
			full := size+len(upserts[n].Wire) > c.srv.hub.opts.ChunkBytes
			if n > 0 && full && base(upserts[n]) != base(upserts[n-1]) {
				break
			}
			size += len(upserts[n].Wire)
		}
		if n == len(upserts) {
			return append(out, chunk{upserts: upserts, removals: removals, complete: complete, trigger: trigger})
		}
		out = append(out, chunk{upserts: upserts[:n], trigger: trigger})
		upserts = upserts[n:]
	}
}

// sendChunk sends the first queued chunk with the watchdog running until its acknowledgement
// (receive stops it).
func (c *conn) sendChunk() error {
	ch := c.queue[0]
	// The queue lets go of what it sent: thousands of idle streams each keeping the array of
	// their snapshot's resources doubled the brain's heap at 5,000 agents.
	c.queue[0] = chunk{}
	c.queue = c.queue[1:]
	if len(c.queue) == 0 {
		c.queue = nil
	}
	c.gen++
	c.s.setInflight(&inflight{gen: c.gen, upserts: ch.upserts, removals: ch.removals, trigger: ch.trigger,
		more: len(c.queue) > 0, complete: ch.complete})
	fr := updateFrame(c.gen, ch.upserts, ch.removals, ch.complete, c.srv.hub.Revision())
	c.watch.Reset(c.srv.hub.opts.StallTimeout)
	if err := c.stream.SendMsg(fr); err != nil {
		return err
	}
	m := c.srv.hub.metrics
	m.Updates.Inc()
	m.Bytes.Add(float64(len(fr.b)))
	m.upserts.Add(float64(fr.upserts))
	m.removals.Add(float64(fr.removals))
	return nil
}

// stall is the watchdog's alarm: an exchange (an update and its ack, a held request and its
// list) took longer than StallTimeout.
func (c *conn) stall() { c.stalledOnce.Do(func() { close(c.stalled) }) }

// health queues a health report for the hook, and says whether req was one: reports may come at
// any time, even between a held request and its answer. They are queued, not handed over here,
// so that a slow store never holds up the acknowledgements read after them.
func (c *conn) health(ctx context.Context, req *v1.StreamRequest) bool {
	hr := req.GetHealthReport()
	if hr == nil {
		return false
	}
	ok := c.srv.hub.probed(c.s.node, hr.Endpoints)
	if n := len(hr.Endpoints) - len(ok); n > 0 {
		// Not fatal: a report may race a probe set's removal. Counted, so forgery shows.
		auth.Count(c.stream.Context(), streamMethod, "not_probed",
			fmt.Sprintf("node %s reported %d endpoints it was not asked to probe", c.s.node, n))
	}
	if c.srv.hub.opts.Hooks.OnHealth == nil || len(ok) == 0 {
		return true
	}
	m := c.srv.hub.metrics
	// An error means the stream is ending: its next Recv says so.
	replaced, _ := c.healthq.push(ctx, ok, m.HealthBacklogFull.Inc)
	m.HealthReplaced.Add(float64(replaced))
	return true
}

// receive handles acknowledgements until the agent closes its side.
func (c *conn) receive(ctx context.Context) error {
	for {
		req, err := c.stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if c.health(ctx, req) {
			continue
		}
		ack := req.GetAck()
		if ack == nil {
			return status.Error(codes.InvalidArgument, "expected an ack or a health report")
		}
		var rejected map[string]rejection
		if len(ack.Rejections) > 0 {
			rejected = make(map[string]rejection, len(ack.Rejections))
		}
		for _, r := range ack.Rejections {
			rejected[r.Name] = rejection{version: r.Version, err: r.Error}
		}
		// Stopped before the ack is settled: once it is, the sender may start the next exchange.
		c.watch.Stop()
		f, err := c.s.onAck(ack.Generation, rejected)
		if err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
		if f.complete {
			c.snapshotDone()
		}
		m := c.srv.hub.metrics
		m.Acks.Inc()
		m.Rejections.Add(float64(len(ack.Rejections)))
		if !f.trigger.IsZero() {
			m.Programming.Observe(time.Since(f.trigger).Seconds())
		}
	}
}

// pending resolves a session's dirty names against the engine: what to upsert, what to remove,
// and the oldest change among them. A port goes away whole: when a dirty name of a port is gone
// and so is the port's service resource, the service's removal goes in this update too, even when
// its own change still waits in the hub's batch (the engine changes at once, sessions learn at
// the flush). Otherwise the agent would be told to drop an endpoint set that the service it still
// holds uses, and would refuse it until the rest arrived.
func pending(e *compute.Engine, node string, dirty map[string]time.Time, rejected func(name, version string) bool) (ups []*compute.Resource, rems []string, trigger time.Time) {
	ups = make([]*compute.Resource, 0, len(dirty))
	var removed map[string]bool
	for name, t := range dirty {
		if trigger.IsZero() || t.Before(trigger) {
			trigger = t
		}
		switch r := e.Resolve(node, name); {
		case r == nil:
			if removed == nil {
				removed = map[string]bool{}
			}
			removed[name] = true
		case !rejected(name, r.Version):
			ups = append(ups, r)
		}
	}
	for _, name := range slices.Collect(maps.Keys(removed)) {
		b, kind := resname.Split(name)
		if kind != resname.KindService && kind != resname.KindCluster && kind != resname.KindLocal {
			continue
		}
		if svc := resname.Join(b, resname.KindService); e.Resolve(node, svc) == nil {
			removed[svc] = true // the agent drops a port whose service is gone, whatever sets it holds
		}
	}
	return ups, slices.Collect(maps.Keys(removed)), trigger
}
