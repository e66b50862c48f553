package store

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Key spaces under the prefix.
const (
	objectsSpace = "objects/"
	healthSpace  = "health/"
	leasesSpace  = "leases/"
	metaKey      = "meta/generation"
)

// ErrConflict is returned by Commit when the store changed since the snapshot it was based on.
var ErrConflict = errors.New("store changed since it was read; retry")

// ErrTooLarge is returned by Commit when one change exceeds a limit of the etcd cluster; the
// error names the limit and how to raise it.
var ErrTooLarge = errors.New("change too large for the store")

// The embedded etcd's limits: one transaction of this many operations and bytes. An external
// cluster has its own (etcd's defaults: --max-txn-ops 128, --max-request-bytes 1.5 MiB).
const (
	EmbeddedMaxTxnOps       = 200_000
	EmbeddedMaxRequestBytes = 64 << 20
)

// tooLarge names the etcd limit a refused transaction of ops operations hit, or returns err.
func tooLarge(err error, ops int) error {
	switch {
	case errors.Is(err, rpctypes.ErrTooManyOps):
		return fmt.Errorf("%w: %d operations in one transaction exceed the etcd cluster's --max-txn-ops; "+
			"raise it on every member (the embedded store allows %d) or apply fewer objects at once", ErrTooLarge, ops, EmbeddedMaxTxnOps)
	case errors.Is(err, rpctypes.ErrRequestTooLarge), status.Code(err) == codes.ResourceExhausted:
		// Past --max-request-bytes plus gRPC's overhead, the member's gRPC server refuses the
		// message before etcd sees it.
		return fmt.Errorf("%w: the transaction exceeds the etcd cluster's --max-request-bytes; "+
			"raise it on every member (the embedded store allows %d MiB) or apply fewer objects at once", ErrTooLarge, EmbeddedMaxRequestBytes>>20)
	}
	return err
}

// Key names a stored object.
type Key struct {
	Kind      string
	Namespace string // "" for cluster-wide kinds such as Node
	Name      string
}

// String renders the key as kind/namespace/name.
func (k Key) String() string { return k.Kind + "/" + k.Namespace + "/" + k.Name }

func (k Key) path() string { return objectsSpace + k.String() }

// Item is a stored object.
type Item struct {
	Key
	Value []byte
}

// Snapshot is every stored object at one revision.
type Snapshot struct {
	Items []Item
	// Revision is etcd's revision of the read.
	Revision int64
	// Generation identifies the last commit: Commit succeeds only if it is unchanged.
	Generation int64
}

// Snapshot reads every object. It fails at once with ErrNoLeader when etcd has no leader.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
	if err := s.requireLeader(ctx); err != nil {
		return nil, err
	}
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.prefix+objectsSpace, clientv3.WithPrefix()),
		clientv3.OpGet(s.prefix+metaKey),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("store: read objects: %w", err)
	}
	snap := &Snapshot{Revision: resp.Header.Revision}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		k, ok := parseObjectKey(strings.TrimPrefix(string(kv.Key), s.prefix+objectsSpace))
		if !ok {
			continue
		}
		snap.Items = append(snap.Items, Item{Key: k, Value: kv.Value})
	}
	if kvs := resp.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		snap.Generation = kvs[0].ModRevision
	}
	return snap, nil
}

func parseObjectKey(rel string) (Key, bool) {
	parts := strings.SplitN(rel, "/", 3)
	if len(parts) != 3 {
		return Key{}, false
	}
	return Key{Kind: parts[0], Namespace: parts[1], Name: parts[2]}, true
}

// Commit writes puts and deletes in one transaction, if nothing was committed since the snapshot
// of the given generation. It returns the new revision.
func (s *Store) Commit(ctx context.Context, generation int64, puts []Item, deletes []Key) (int64, error) {
	return s.CommitChange(ctx, generation, Change{Puts: puts, Deletes: deletes})
}

// Change is one all-or-nothing write of objects.
type Change struct {
	Puts    []Item
	Deletes []Key
	// Prune lists raw prefixes (outside the objects space) removed in the same transaction: what
	// a deleted object leaves behind, such as a service's probe results, must not outlive it,
	// not even by the time between two writes.
	Prune []string
}

// CommitChange writes c in one transaction, if nothing was committed since the snapshot of the
// given generation. It returns the new revision. A change that adds is refused with ErrQuota
// when the store has no room for it; one that only deletes goes through even when etcd's space
// alarm is raised (see deleteUnderAlarm).
func (s *Store) CommitChange(ctx context.Context, generation int64, c Change) (int64, error) {
	if err := s.checkRoom(ctx, c); err != nil {
		return 0, err
	}
	rev, err := s.commit(ctx, generation, c, clientv3.OpPut(s.prefix+metaKey, ""))
	if isNoSpace(err) && len(c.Puts) == 0 {
		return s.deleteUnderAlarm(ctx, generation, c)
	}
	if err != nil && err != ErrConflict {
		return 0, fmt.Errorf("store: commit: %w", s.noSpace(ctx, err))
	}
	return rev, err
}

// deleteUnderAlarm commits a change that only deletes on a store whose space alarm is raised:
// etcd refuses every write that adds, the new generation included, but lets deletes through.
// It first makes room (compaction, defragmentation, disarming); failing that, it deletes the
// generation instead of writing it: a commit based on an earlier snapshot still fails its
// comparison, and the next commit that adds writes it again.
func (s *Store) deleteUnderAlarm(ctx context.Context, generation int64, c Change) (int64, error) {
	if err := s.maintain(ctx, 0); err != nil {
		s.log.Warn("store maintenance to make room failed", "err", err)
	}
	rev, err := s.commit(ctx, generation, c, clientv3.OpPut(s.prefix+metaKey, ""))
	if isNoSpace(err) {
		rev, err = s.commit(ctx, generation, c, clientv3.OpDelete(s.prefix+metaKey))
	}
	if err != nil && err != ErrConflict {
		return 0, fmt.Errorf("store: commit: %w", s.noSpace(ctx, err))
	}
	return rev, err
}

// commit runs c and the generation's op in one transaction conditional on generation.
func (s *Store) commit(ctx context.Context, generation int64, c Change, gen clientv3.Op) (int64, error) {
	ops := make([]clientv3.Op, 0, len(c.Puts)+len(c.Deletes)+len(c.Prune)+1)
	for _, p := range c.Puts {
		ops = append(ops, clientv3.OpPut(s.prefix+p.path(), string(p.Value)))
	}
	for _, k := range c.Deletes {
		ops = append(ops, clientv3.OpDelete(s.prefix+k.path()))
	}
	for _, p := range c.Prune {
		if err := checkRaw(p); err != nil {
			return 0, err
		}
		ops = append(ops, clientv3.OpDelete(s.prefix+p, clientv3.WithPrefix()))
	}
	ops = append(ops, gen)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(s.prefix+metaKey), "=", generation)).
		Then(ops...).
		Commit()
	if err != nil {
		return 0, tooLarge(err, len(ops))
	}
	if !resp.Succeeded {
		return 0, ErrConflict
	}
	if len(c.Deletes)+len(c.Prune) > 0 {
		s.deleted()
	}
	return resp.Header.Revision, nil
}

// Events returns the events that committing c on top of the state in b would bring a watcher:
// what a change would do, computed without making it.
func (c Change) Events(b Batch) []Event {
	out := make([]Event, 0, len(c.Puts)+len(c.Deletes))
	for _, p := range c.Puts {
		out = append(out, Event{Path: p.path(), Value: p.Value})
	}
	for _, k := range c.Deletes {
		out = append(out, Event{Delete: true, Path: k.path()})
	}
	for _, ev := range b.Events {
		for _, p := range c.Prune {
			if strings.HasPrefix(ev.Path, p) {
				out = append(out, Event{Delete: true, Path: ev.Path})
				break
			}
		}
	}
	return out
}
