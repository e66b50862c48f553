package stream

import (
	"context"
	"sync"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// healthQueue holds one stream's health results between its receive loop and the worker that
// hands them to the OnHealth hook. The hook writes to a store (etcd in bare metal) that may be
// slow; on the receive loop it would hold up the agent's acknowledgements, and so every update
// to it. Queued, a slow store delays only health. It holds at most one result per endpoint, the
// newest: an endpoint that flapped while the store was slow is written once, as it is now.
type healthQueue struct {
	max   int
	kick  chan struct{} // buffered: results are waiting for the worker
	space chan struct{} // buffered: the worker took what was waiting

	mu      sync.Mutex
	order   []*v1.EndpointHealth // in the order their endpoints were first queued
	pending map[endpointKey]int  // endpoint -> its index in order
}

type endpointKey struct{ namespace, service, address string }

func newHealthQueue(limit int) *healthQueue {
	return &healthQueue{
		max:     limit,
		kick:    make(chan struct{}, 1),
		space:   make(chan struct{}, 1),
		pending: map[endpointKey]int{},
	}
}

// push queues results, each replacing the waiting result of its endpoint, and returns how many
// did. When max endpoints are waiting and a result is of another one, it waits for the worker
// (the receive loop is then held up, as before queueing: nothing is dropped, since an agent
// reports transitions only) or until ctx ends.
func (q *healthQueue) push(ctx context.Context, results []*v1.EndpointHealth, onFull func()) (replaced int, err error) {
	for _, r := range results {
		k := endpointKey{r.Namespace, r.Service, r.Address}
		for {
			q.mu.Lock()
			i, ok := q.pending[k]
			if ok {
				q.order[i] = r
				replaced++
			} else if len(q.order) < q.max {
				q.pending[k] = len(q.order)
				q.order = append(q.order, r)
				ok = true
			}
			q.mu.Unlock()
			if ok {
				break
			}
			onFull()
			q.signal(q.kick)
			select {
			case <-q.space:
			case <-ctx.Done():
				return replaced, ctx.Err()
			}
		}
	}
	q.signal(q.kick)
	return replaced, nil
}

// take empties the queue.
func (q *healthQueue) take() []*v1.EndpointHealth {
	q.mu.Lock()
	out := q.order
	q.order = nil
	clear(q.pending)
	q.mu.Unlock()
	q.signal(q.space)
	return out
}

func (q *healthQueue) signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// run hands what is queued to hook, one call at a time, until ctx ends. What is still queued
// then is dropped: a report must not outlive the session that made it.
func (q *healthQueue) run(ctx context.Context, hook func([]*v1.EndpointHealth)) {
	for {
		select {
		case <-q.kick:
		case <-ctx.Done():
			return
		}
		if batch := q.take(); len(batch) > 0 {
			hook(batch)
		}
	}
}
