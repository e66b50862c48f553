package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
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
type Lease struct {
	s  *Store
	id clientv3.LeaseID
}

// GrantLease writes value at path, under leases/, with a new lease of ttl. The lease lives ttl
// unless KeepAlive keeps it.
func (s *Store) GrantLease(ctx context.Context, path string, value []byte, ttl time.Duration) (*Lease, error) {
	if !strings.HasPrefix(path, leasesSpace) {
		return nil, fmt.Errorf("store: %s is not a lease path", path)
	}
	lease, err := s.cli.Grant(ctx, int64(max(ttl/time.Second, 1)))
	if err != nil {
		return nil, fmt.Errorf("store: grant lease for %s: %w", path, err)
	}
	if _, err := s.cli.Put(ctx, s.prefix+path, string(value), clientv3.WithLease(lease.ID)); err != nil {
		return nil, fmt.Errorf("store: put %s: %w", path, err)
	}
	return &Lease{s: s, id: lease.ID}, nil
}

// KeepAlive keeps the lease alive until ctx ends. It does not revoke the lease then: its keys
// outlive the holder by up to the TTL, the grace in which a restarting holder comes back
// unnoticed.
func (l *Lease) KeepAlive(ctx context.Context) error {
	ch, err := l.s.cli.KeepAlive(ctx, l.id)
	if err != nil {
		return fmt.Errorf("store: keep lease %x: %w", l.id, err)
	}
	for range ch {
	}
	return nil
}

// Put writes value at path (outside the objects space) attached to the lease: it goes away when
// the lease expires, and a put after that fails with ErrLeaseGone.
func (l *Lease) Put(ctx context.Context, path string, value []byte) error {
	if err := checkRaw(path); err != nil {
		return err
	}
	_, err := l.s.cli.Put(ctx, l.s.prefix+path, string(value), clientv3.WithLease(l.id))
	if errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("put %s: %w", path, ErrLeaseGone)
	}
	if err != nil {
		return fmt.Errorf("store: put %s: %w", path, err)
	}
	return nil
}

// Delete removes a key, whatever lease it is under: deleting needs none. It is here so a
// holder writes and clears its keys through one handle.
func (l *Lease) Delete(ctx context.Context, path string) error { return l.s.DeleteRaw(ctx, path) }

// HoldLease writes value at path under a lease of ttl and keeps the lease alive until ctx ends
// (see GrantLease and KeepAlive).
func (s *Store) HoldLease(ctx context.Context, path string, value []byte, ttl time.Duration) error {
	l, err := s.GrantLease(ctx, path, value, ttl)
	if err != nil {
		return err
	}
	return l.KeepAlive(ctx)
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
