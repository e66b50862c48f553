package stream

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// errNotServed ends a stream whose brain said nothing within FirstUpdateTimeout.
var errNotServed = errors.New("brain did not serve the stream")

// returnTo ends a stream on a fallback brain because order[index], which the node prefers,
// serves again.
type returnTo struct {
	index int
	addr  string
}

func (r returnTo) Error() string { return fmt.Sprintf("returning to preferred brain %s", r.addr) }

// healthTimeout bounds one check of whether a preferred brain serves.
const healthTimeout = 5 * time.Second

// watch ends the session on order[at] with a cause: errNotServed when the brain has not sent its
// first message within FirstUpdateTimeout, a returnTo when a brain earlier in order serves again.
//
// Moving back is gradual by design. An agent stays on its fallback for a jittered ReturnAfter,
// so the agents of a replica that comes back return spread over a whole ReturnAfter instead of
// storming its snapshot slots together; and it moves only once the preferred brain's health says
// SERVING (synced), so a working stream is never dropped for a brain that would hold it unserved.
// A preferred brain that is still behind this agent's revision refuses it within its BehindWait,
// and the agent fails over again as after any error.
func (a *Agent) watch(ctx context.Context, end context.CancelCauseFunc, order []string, at int, served <-chan struct{}) {
	if len(order) > 1 {
		t := time.NewTimer(a.cfg.FirstUpdateTimeout)
		select {
		case <-served:
			t.Stop()
		case <-t.C:
			end(fmt.Errorf("%w within %s", errNotServed, a.cfg.FirstUpdateTimeout))
			return
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	if at == 0 {
		return // on the preferred brain: nowhere better to go
	}
	for {
		t := time.NewTimer(jittered(a.cfg.ReturnAfter))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		for i, addr := range order[:at] { // the most preferred first
			if a.serving(ctx, addr) {
				end(returnTo{index: i, addr: addr})
				return
			}
		}
	}
}

// serving reports whether the brain at addr says SERVING on grpc.health.v1, which it does only
// once its sources are synced. Health is open to anyone, so the agent's own credentials do.
func (a *Agent) serving(ctx context.Context, addr string) bool {
	conn, err := a.dial(addr)
	if err != nil {
		return false
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	r, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err == nil && r.Status == healthpb.HealthCheckResponse_SERVING
}

// jittered returns a duration uniformly in [d/2, 3d/2).
func jittered(d time.Duration) time.Duration {
	return d/2 + time.Duration(rand.Int64N(int64(max(d, 1))))
}
