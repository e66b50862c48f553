package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
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

// Snapshot reads every object.
func (s *Store) Snapshot(ctx context.Context) (*Snapshot, error) {
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
	ops := make([]clientv3.Op, 0, len(puts)+len(deletes)+1)
	for _, p := range puts {
		ops = append(ops, clientv3.OpPut(s.prefix+p.path(), string(p.Value)))
	}
	for _, k := range deletes {
		ops = append(ops, clientv3.OpDelete(s.prefix+k.path()))
	}
	ops = append(ops, clientv3.OpPut(s.prefix+metaKey, ""))
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(s.prefix+metaKey), "=", generation)).
		Then(ops...).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("store: commit: %w", err)
	}
	if !resp.Succeeded {
		return 0, ErrConflict
	}
	return resp.Header.Revision, nil
}

// PutRaw writes a value outside the objects space (probe results, leases), where writes are not
// versioned against commits.
func (s *Store) PutRaw(ctx context.Context, path string, value []byte) error {
	if strings.HasPrefix(path, objectsSpace) || strings.HasPrefix(path, "meta/") {
		return fmt.Errorf("store: %s is not writable raw", path)
	}
	if _, err := s.cli.Put(ctx, s.prefix+path, string(value)); err != nil {
		return fmt.Errorf("store: put %s: %w", path, err)
	}
	return nil
}

// DeleteRaw removes a value outside the objects space.
func (s *Store) DeleteRaw(ctx context.Context, path string) error {
	if strings.HasPrefix(path, objectsSpace) || strings.HasPrefix(path, "meta/") {
		return fmt.Errorf("store: %s is not writable raw", path)
	}
	if _, err := s.cli.Delete(ctx, s.prefix+path); err != nil {
		return fmt.Errorf("store: delete %s: %w", path, err)
	}
	return nil
}

// HoldLease writes value at path under a lease of ttl and keeps the lease alive until ctx ends.
// It does not revoke the lease then: the key outlives the holder by up to ttl, the grace in which
// a restarting holder comes back unnoticed.
func (s *Store) HoldLease(ctx context.Context, path string, value []byte, ttl time.Duration) error {
	if !strings.HasPrefix(path, leasesSpace) {
		return fmt.Errorf("store: %s is not a lease path", path)
	}
	lease, err := s.cli.Grant(ctx, int64(max(ttl/time.Second, 1)))
	if err != nil {
		return fmt.Errorf("store: grant lease for %s: %w", path, err)
	}
	if _, err := s.cli.Put(ctx, s.prefix+path, string(value), clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("store: put %s: %w", path, err)
	}
	ch, err := s.cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		return fmt.Errorf("store: keep lease for %s: %w", path, err)
	}
	for range ch {
	}
	return nil
}

// Leased lists the names under leases/: the nodes whose agents are registered.
func (s *Store) Leased(ctx context.Context) ([]string, error) {
	resp, err := s.cli.Get(ctx, s.prefix+leasesSpace, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, fmt.Errorf("store: list leases: %w", err)
	}
	var out []string
	for _, kv := range resp.Kvs {
		out = append(out, strings.TrimPrefix(string(kv.Key), s.prefix+leasesSpace))
	}
	return out, nil
}
