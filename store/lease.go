package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrLeaseGone is returned for a write under a lease that has expired or was revoked: what its
// holder said ended with it.
var ErrLeaseGone = errors.New("store: lease expired")

// Lease is an etcd lease and the registration written with it (leases/<name>). Keys put through
// it end when it does, so whatever a session writes through its lease cannot outlive the
// session, whoever wrote the key before.
//
// A Lease is a handle, not one etcd lease: Hold may replace the etcd lease behind it after a loss,
// and rewrites under the new one what was put through the handle, so a holder's writes follow
// its session rather than the etcd lease that happened to carry them.
type Lease struct {
	s    *Store
	path string
	ttl  time.Duration

	// id is the etcd lease behind the handle, read without mu: renewing the lease must not wait
	// for a write stuck on a slow etcd, or the lease expires meanwhile.
	id atomic.Int64
	// mu serialises writes through the handle with a replacement of its lease: a key deleted
	// while the lease is being replaced must not be rewritten by the replay, and nothing is
	// written under a lease that is being replaced.
	mu sync.Mutex
	// kept is every key put through the handle and not deleted since (the registration
	// included), with its value: what a replacement lease must carry again.
	kept map[string][]byte
}

// GrantLease writes value at path, under leases/, with a new lease of ttl. The lease lives ttl
// unless KeepAlive keeps it.
func (s *Store) GrantLease(ctx context.Context, path string, value []byte, ttl time.Duration) (*Lease, error) {
	if err := checkLeasePath(path); err != nil {
		return nil, err
	}
	lease, err := s.cli.Grant(ctx, int64(max(ttl/time.Second, 1)))
	if err != nil {
		if isNoSpace(err) {
			s.kick() // etcd's space alarm refuses grants too: make room now, not in a minute
		}
		return nil, fmt.Errorf("store: grant lease for %s: %w", path, err)
	}
	if _, err := s.cli.Put(ctx, s.prefix+path, string(value), clientv3.WithLease(lease.ID)); err != nil {
		return nil, fmt.Errorf("store: put %s: %w", path, err)
	}
	l := &Lease{s: s, path: path, ttl: ttl, kept: map[string][]byte{path: value}}
	l.id.Store(int64(lease.ID))
	return l, nil
}

// KeepAlive keeps the lease alive until ctx ends, or until the lease is lost: revoked, expired,
// or unrenewed for a TTL because etcd was away (the client then gives up on it). It does not
// revoke the lease when ctx ends: its keys outlive the holder by up to the TTL, the grace in
// which a restarting holder comes back unnoticed. Hold is KeepAlive that survives losses.
func (l *Lease) KeepAlive(ctx context.Context) error {
	id := l.current()
	ch, err := l.s.cli.KeepAlive(ctx, id)
	if err != nil {
		return fmt.Errorf("store: keep lease %x: %w", id, err)
	}
	for range ch {
	}
	return nil
}

// ID is the etcd lease currently behind the handle.
func (l *Lease) ID() int64 { return int64(l.current()) }

func (l *Lease) current() clientv3.LeaseID { return clientv3.LeaseID(l.id.Load()) }

// Put writes value at path (outside the objects space) attached to the lease: it goes away when
// the lease expires, and a put after that fails with ErrLeaseGone. The handle remembers it even
// when the write fails: while Hold holds the lease, a lease it re-establishes carries it again.
func (l *Lease) Put(ctx context.Context, path string, value []byte) error {
	if err := checkRaw(path); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kept[path] = value
	_, err := l.s.cli.Put(ctx, l.s.prefix+path, string(value), clientv3.WithLease(l.current()))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("put %s: %w", path, ErrLeaseGone)
	}
	if err != nil {
		return fmt.Errorf("store: put %s: %w", path, err)
	}
	return nil
}

// Delete removes a key, whatever lease it is under: deleting needs none. It is here so a
// holder writes and clears its keys through one handle, and so a replacement lease does not
// bring the key back.
func (l *Lease) Delete(ctx context.Context, path string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.kept, path)
	return l.s.DeleteRaw(ctx, path)
}

// Leases returns the registrations under leases/ by name: the nodes whose agents are
// registered, with what they registered.
func (s *Store) Leases(ctx context.Context) (map[string][]byte, error) {
	resp, err := s.cli.Get(ctx, s.prefix+leasesSpace, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("store: list leases: %w", err)
	}
	out := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), s.prefix+leasesSpace)] = kv.Value
	}
	return out, nil
}
