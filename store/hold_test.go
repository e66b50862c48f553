package store

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseOf returns the lease a key is under, and whether the key exists.
func leaseOf(t *testing.T, s *Store, path string) (clientv3.LeaseID, bool) {
	t.Helper()
	resp, err := s.Client().Get(context.Background(), s.prefix+path)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return 0, false
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease), true
}

// waitGranted returns the lease HoldLease reports granted on ch.
func waitGranted(t *testing.T, ch <-chan *Lease) *Lease {
	t.Helper()
	select {
	case l := <-ch:
		return l
	case <-time.After(30 * time.Second):
		t.Fatal("no lease granted")
		return nil
	}
}

// TestHeldLeaseComesBackAfterItIsLost revokes a held lease while its holder's context lives, as
// an etcd outage longer than the TTL ends it: the registration and what was put through the
// handle come back under a new lease, a key deleted through the handle does not, and later
// writes through the same handle go under the new lease.
func TestHeldLeaseComesBackAfterItIsLost(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	granted := make(chan *Lease, 1)
	restored := make(chan struct{}, 8)
	var lost atomic.Int32
	held := make(chan error, 1)
	go func() {
		held <- s.HoldLease(ctx, "leases/n1", []byte(`{"zone":"a"}`), 2*time.Second, LeaseEvents{
			Granted:  func(l *Lease) { granted <- l },
			Lost:     func(error) { lost.Add(1) },
			Restored: func() { restored <- struct{}{} },
		})
	}()
	l := waitGranted(t, granted)
	const failing, cleared = "health/default/web/n1/10.0.0.1", "health/default/web/n1/10.0.0.2"
	for _, p := range []string{failing, cleared} {
		if err := l.Put(ctx, p, []byte("fail")); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Delete(ctx, cleared); err != nil {
		t.Fatal(err)
	}
	first := clientv3.LeaseID(l.ID())
	if _, err := s.Client().Revoke(ctx, first); err != nil {
		t.Fatal(err)
	}
	select {
	case <-restored:
	case <-time.After(30 * time.Second):
		t.Fatal("the lease was not re-established")
	}
	next := clientv3.LeaseID(l.ID())
	if next == first {
		t.Fatalf("still lease %x after it was revoked", first)
	}
	for _, p := range []string{"leases/n1", failing} {
		if id, ok := leaseOf(t, s, p); !ok || id != next {
			t.Errorf("%s: present %v under lease %x, want it under the new lease %x", p, ok, id, next)
		}
	}
	if v, _ := rawValue(t, s, "leases/n1"); v != `{"zone":"a"}` {
		t.Errorf("registration %q after re-establishing", v)
	}
	if _, ok := rawValue(t, s, cleared); ok {
		t.Error("a key deleted through the handle came back with the new lease")
	}
	if lost.Load() == 0 {
		t.Error("the loss was not reported")
	}
	if err := l.Put(ctx, "health/default/web/n1/10.0.0.3", []byte("fail")); err != nil {
		t.Fatalf("put through the handle after re-establishing: %v", err)
	}
	if id, _ := leaseOf(t, s, "health/default/web/n1/10.0.0.3"); id != next {
		t.Errorf("a later put went under lease %x, want %x", id, next)
	}
	cancel()
	select {
	case err := <-held:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("HoldLease did not return when its context ended")
	}
}

// TestHoldLeaseRefusesAPathOutsideLeases: the brain finds nodes under leases/ only.
func TestHoldLeaseRefusesAPathOutsideLeases(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	if err := s.HoldLease(context.Background(), "health/x", nil, time.Second, LeaseEvents{}); err == nil {
		t.Error("a lease held outside leases/")
	}
}

// TestHeldRegistrationOutlivesAnotherHoldersLease: a node's old stream wrote the registration
// last and ended; its lease expires (here it is revoked) and takes the key with it, while the new
// stream still holds its lease. The key comes back under the live holder's lease.
func TestHeldRegistrationOutlivesAnotherHoldersLease(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	granted := make(chan *Lease, 1)
	go func() {
		_ = s.HoldLease(ctx, "leases/n1", []byte("new"), 2*time.Second, LeaseEvents{Granted: func(l *Lease) { granted <- l }})
	}()
	live := waitGranted(t, granted)
	old, err := s.GrantLease(ctx, "leases/n1", []byte("old"), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client().Revoke(ctx, clientv3.LeaseID(old.ID())); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		id, ok := leaseOf(t, s, "leases/n1")
		if v, _ := rawValue(t, s, "leases/n1"); ok && id == clientv3.LeaseID(live.ID()) && v == "new" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("registration present %v under lease %x, want it back under the live holder's %x", ok, id, live.ID())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
