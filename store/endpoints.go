package store

import (
	"context"
	"slices"
	"sync"
	"time"
)

// How often the members of an external cluster are asked whether they answer, and how long one
// may take. A member that stops without closing its connections (paused, cut off) otherwise keeps
// getting requests until gRPC keep-alive gives up, some 15 s later.
const (
	endpointCheckEvery = time.Second
	endpointCheckWait  = 800 * time.Millisecond
)

// watchEndpoints keeps the client on the members that answer: every round it asks each member of
// all for its status and, when the answering set changed, gives the client only those (all of
// them when none answers, so that a recovering cluster is found again). It returns when ctx ends.
func (s *Store) watchEndpoints(ctx context.Context, all []string) {
	current := slices.Clone(all)
	t := time.NewTicker(endpointCheckEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		alive := s.answering(ctx, all)
		if len(alive) == 0 {
			alive = all
		}
		if slices.Equal(alive, current) {
			continue
		}
		s.log.Info("store: etcd members answering", "endpoints", alive, "of", all)
		s.cli.SetEndpoints(alive...)
		current = alive
	}
}

// answering returns the members of all that answer a status request in time, in all's order.
func (s *Store) answering(ctx context.Context, all []string) []string {
	ok := make([]bool, len(all))
	var wg sync.WaitGroup
	for i, ep := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, endpointCheckWait)
			defer cancel()
			_, err := s.cli.Status(cctx, ep)
			ok[i] = err == nil
		}()
	}
	wg.Wait()
	var out []string
	for i, ep := range all {
		if ok[i] {
			out = append(out, ep)
		}
	}
	return out
}
