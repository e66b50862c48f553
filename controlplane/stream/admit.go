package stream

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// admit receives the stream's hello and counts the stream against the stream limits: in the
// total from the start, and against its node's share. release uncounts it.
func (srv *Server) admit(ctx context.Context, stream v1.AgentService_StreamServer) (hello *v1.Hello, release func(), err error) {
	var held []func()
	release = func() {
		for _, f := range held {
			f()
		}
	}
	take := func(node string) error {
		done, err := srv.hub.limits.admit(node)
		if err != nil {
			limit := "node"
			if node == "" {
				limit = "total"
			}
			srv.hub.metrics.Refused.WithLabelValues(limit).Inc()
			srv.log.Warn("agent stream refused", "node", node, "limit", limit, "err", err)
			return status.Error(codes.ResourceExhausted, err.Error())
		}
		held = append(held, done)
		return nil
	}
	// A node's certificate or token names the node: its streams count from the start, so that a
	// node cannot hold more than its share by never saying hello. Other callers (the insecure
	// loopback identity) speak for the node their hello names.
	known := ""
	if id := auth.FromContext(ctx); id.Role == pki.RoleNode {
		known = id.Name
	}
	err = take("")
	if err == nil && known != "" {
		err = take(known)
	}
	if err == nil {
		hello, err = srv.hello(ctx, stream)
	}
	if err == nil && known == "" {
		err = take(hello.NodeName)
	}
	if err != nil {
		release()
		return nil, nil, err
	}
	return hello, release, nil
}

// errNoHello is why a stream whose peer said nothing in time is cut; the handler turns it into
// DeadlineExceeded.
var errNoHello = errors.New("no first message")

// firstMessage receives the stream's first message, waiting at most HelloTimeout. gRPC's Recv
// has no timeout, so it runs on a goroutine of its own; when the wait is over the handler
// returns, which ends the stream and with it that Recv.
func (srv *Server) firstMessage(ctx context.Context, stream v1.AgentService_StreamServer) (*v1.StreamRequest, error) {
	type received struct {
		req *v1.StreamRequest
		err error
	}
	got := make(chan received, 1)
	go func() {
		req, err := stream.Recv()
		got <- received{req, err}
	}()
	wait := srv.hub.opts.HelloTimeout
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-got:
		return r.req, r.err
	case <-t.C:
		return nil, fmt.Errorf("%w within %s (hello timeout)", errNoHello, wait)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// hello receives and checks the stream's first message: a hello, within HelloTimeout, naming a
// node the caller may speak for.
func (srv *Server) hello(ctx context.Context, stream v1.AgentService_StreamServer) (*v1.Hello, error) {
	first, err := srv.firstMessage(ctx, stream)
	if errors.Is(err, errNoHello) {
		srv.hub.metrics.HelloTimeouts.Inc()
		srv.log.Warn("agent stream cut", "identity", auth.FromContext(ctx).String(), "err", err)
		return nil, status.Error(codes.DeadlineExceeded, err.Error())
	}
	if err != nil {
		return nil, err
	}
	hello := first.GetHello()
	if hello == nil || hello.NodeName == "" {
		return nil, status.Error(codes.InvalidArgument, "first message must be a hello with node_name")
	}
	if n := len(hello.HeldDigests); n > maxBuckets {
		return nil, status.Errorf(codes.InvalidArgument, "held_digests: %d buckets, at most %d", n, maxBuckets)
	}
	// Checked before anything is spent on the stream, and before the node's streams are counted:
	// a caller must not use up another node's room.
	if id := auth.FromContext(ctx); !id.MayStreamAs(hello.NodeName) {
		return nil, auth.Refuse(ctx, streamMethod, "node_mismatch",
			fmt.Sprintf("%s may not open the stream of node %q", id, hello.NodeName))
	}
	return hello, nil
}
