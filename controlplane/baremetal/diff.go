package baremetal

import (
	"context"
	"io"
	"log/slog"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// Diff validates objs and allocates what they leave out exactly as Apply would, stores nothing,
// and computes with the brain's own engine what each node would be told differently: the
// stored state is replayed into two engines through the source's own conversion, the change is
// applied to one of them, and the ports its delta names are compared node by node.
func Diff(ctx context.Context, st *store.Store, objs []*Object, set Settings, opts compute.Options) ([]*v1.NodeDiff, error) {
	for _, o := range objs {
		if err := validate(o, set); err != nil {
			return nil, err
		}
	}
	_, change, err := plan(ctx, st, cloneForAttempt(objs), set)
	if err != nil {
		return nil, err
	}
	all, err := st.ReadAll(ctx)
	if err != nil {
		return nil, err
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	before, after := compute.NewEngine(opts), compute.NewEngine(opts)
	newSourceState(quiet).apply(before, all)
	next := newSourceState(quiet)
	next.apply(after, all)
	d := next.apply(after, store.Batch{Revision: all.Revision + 1, Events: change.Change.Events(all)})
	return compute.DiffPorts(before, after, d), nil
}
