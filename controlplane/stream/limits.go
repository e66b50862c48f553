package stream

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// errStreamLimit is why a stream is refused for want of room; the handler turns it into
// ResourceExhausted.
var errStreamLimit = errors.New("stream limit reached")

// streamLimits counts the streams being served, in total and per node. Every stream costs
// goroutines and buffers whether or not its agent does anything: without a cap, idle streams
// alone take the brain's memory (issue 12: 20,000 of them cost 250 MB).
type streamLimits struct {
	total, perNode int
	gauge          prometheus.Gauge // mirrors open

	mu     sync.Mutex
	open   int
	byNode map[string]int
}

func newStreamLimits(total, perNode int, gauge prometheus.Gauge) *streamLimits {
	return &streamLimits{total: total, perNode: perNode, gauge: gauge, byNode: map[string]int{}}
}

// admit counts a stream of node, or with node "" one in the total (every stream is counted so
// first, before it has said who it is); release uncounts it.
func (l *streamLimits) admit(node string) (release func(), err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if node == "" {
		if l.open >= l.total {
			return nil, fmt.Errorf("%w: %d streams open, at most %d in total (max streams)", errStreamLimit, l.open, l.total)
		}
		l.open++
		l.gauge.Inc()
		return sync.OnceFunc(func() {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.open--
			l.gauge.Dec()
		}), nil
	}
	if n := l.byNode[node]; n >= l.perNode {
		return nil, fmt.Errorf("%w: node %q has %d streams open, at most %d per node (max streams per node)", errStreamLimit, node, n, l.perNode)
	}
	l.byNode[node]++
	return sync.OnceFunc(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.byNode[node]--; l.byNode[node] == 0 {
			delete(l.byNode, node) // a node that went away leaves nothing behind
		}
	}), nil
}
