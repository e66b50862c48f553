package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Event is one change under the prefix. Path is relative to the prefix: objects/<kind>/<ns>/<name>,
// health/<ns>/<service>/<node>/<address>, leases/<node>.
type Event struct {
	Delete bool
	Path   string
	Value  []byte
}

// Batch is what one watch response brought. When Reset is set, Events is the whole state at
// Revision and anything not in it is gone: the first batch, and after the watch fell behind a
// compaction.
type Batch struct {
	Revision int64
	Reset    bool
	Events   []Event
}

// Object parses an object path.
func (e Event) Object() (Key, bool) {
	rel, ok := strings.CutPrefix(e.Path, objectsSpace)
	if !ok {
		return Key{}, false
	}
	return parseObjectKey(rel)
}

// Watch calls fn with the whole state, then with every change, until ctx ends. It resumes from
// the last revision it delivered when the watch breaks, and relists when that revision has been
// compacted away. fn runs on one goroutine, in revision order.
func (s *Store) Watch(ctx context.Context, fn func(Batch)) error {
	rev, err := s.relist(ctx, fn)
	if err != nil {
		return err
	}
	return s.watchFrom(ctx, rev, fn)
}

// watchFrom delivers the changes after revision rev.
func (s *Store) watchFrom(ctx context.Context, rev int64, fn func(Batch)) error {
	var err error
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, s.prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
		for wr := range wch {
			if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
				s.log.Info("store watch fell behind a compaction; relisting", "from", rev, "compacted", wr.CompactRevision)
				if rev, err = s.relist(ctx, fn); err != nil {
					cancel()
					return err
				}
				break
			}
			if err := wr.Err(); err != nil {
				s.log.Warn("store watch broke; resuming", "revision", rev, "err", err)
				break
			}
			if len(wr.Events) == 0 {
				continue
			}
			b := Batch{Revision: wr.Header.Revision}
			for _, ev := range wr.Events {
				b.Events = append(b.Events, Event{
					Delete: ev.Type == clientv3.EventTypeDelete,
					Path:   strings.TrimPrefix(string(ev.Kv.Key), s.prefix),
					Value:  ev.Kv.Value,
				})
			}
			fn(b)
			rev = wr.Header.Revision
		}
		cancel()
		select {
		case <-ctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	return nil
}

// ReadAll returns the whole state under the prefix as one Reset batch: what Watch delivers first.
func (s *Store) ReadAll(ctx context.Context) (Batch, error) {
	if err := s.requireLeader(ctx); err != nil {
		return Batch{}, err
	}
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
	if err != nil {
		return Batch{}, fmt.Errorf("store: list: %w", err)
	}
	return batchOf(resp.Header.Revision, resp.Kvs, s.prefix), nil
}

func batchOf(rev int64, kvs []*mvccpb.KeyValue, prefix string) Batch {
	b := Batch{Revision: rev, Reset: true}
	for _, kv := range kvs {
		b.Events = append(b.Events, Event{Path: strings.TrimPrefix(string(kv.Key), prefix), Value: kv.Value})
	}
	return b
}

// relist delivers the whole state and returns its revision.
func (s *Store) relist(ctx context.Context, fn func(Batch)) (int64, error) {
	for {
		resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithPrefix())
		if err == nil {
			fn(batchOf(resp.Header.Revision, resp.Kvs, s.prefix))
			return resp.Header.Revision, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		s.log.Warn("store list failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("store: list: %w", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}
