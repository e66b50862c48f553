package kubernetes

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
)

// watchErrorLogger reports a failed list or watch of kind at WARN. client-go logs these at
// verbosity 2 only, so without it a brain that cannot reach the API server, or that lacks RBAC,
// would sit NOT_SERVING with nothing in its log at the default level. A watch that merely
// expired is routine and stays at DEBUG.
func watchErrorLogger(log *slog.Logger, kind string) cache.WatchErrorHandlerWithContext {
	return func(_ context.Context, _ *cache.Reflector, err error) {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			log.Debug("watch ended; restarting it", "resource", kind, "err", err)
			return
		}
		log.Warn("list/watch failed; retrying", "resource", kind, "err", err)
	}
}

// waitSynced waits until every informer's handler has seen its initial list, saying every
// interval which ones are still missing. It returns false when ctx ends first.
func waitSynced(ctx context.Context, log *slog.Logger, interval time.Duration, kinds []string, synced []cache.InformerSynced) bool {
	start := time.Now()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	nextReport := start.Add(interval)
	for {
		var missing []string
		for i, s := range synced {
			if !s() {
				missing = append(missing, kinds[i])
			}
		}
		if len(missing) == 0 {
			return true
		}
		if time.Now().After(nextReport) {
			log.Warn("still waiting for the initial list; not serving agents yet", "missing", strings.Join(missing, ","), "waited", time.Since(start).Round(time.Second))
			nextReport = time.Now().Add(interval)
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
