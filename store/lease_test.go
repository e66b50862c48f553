package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func rawValue(t *testing.T, s *Store, path string) (string, bool) {
	t.Helper()
	resp, err := s.Client().Get(context.Background(), s.prefix+path)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return "", false
	}
	return string(resp.Kvs[0].Value), true
}

// TestKeysPutThroughALeaseEndWithIt writes a key through a lease: it stays while the lease is
// kept alive past its TTL, goes away once it is not, and a later put through it is refused.
func TestKeysPutThroughALeaseEndWithIt(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	l, err := s.GrantLease(ctx, "leases/n1", []byte(`{"zone":"a"}`), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "health/default/web/n1/10.0.0.1", []byte("fail")); err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	kept := make(chan error, 1)
	go func() { kept <- l.KeepAlive(kctx) }()
	time.Sleep(3 * time.Second) // past the TTL: only the keep-alive holds it
	if _, ok := rawValue(t, s, "health/default/web/n1/10.0.0.1"); !ok {
		t.Fatal("a key under a lease kept alive went away")
	}
	leases, err := s.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(leases["n1"]) != `{"zone":"a"}` || len(leases) != 1 {
		t.Errorf("Leases() = %q, want n1's registration only", leases)
	}
	stop()
	if err := <-kept; err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, ok := rawValue(t, s, "health/default/web/n1/10.0.0.1"); ok; _, ok = rawValue(t, s, "health/default/web/n1/10.0.0.1") {
		if time.Now().After(deadline) {
			t.Fatal("the key outlived its lease")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok := rawValue(t, s, "leases/n1"); ok {
		t.Error("the registration outlived its lease")
	}
	if err := l.Put(ctx, "health/default/web/n1/10.0.0.1", []byte("fail")); !errors.Is(err, ErrLeaseGone) {
		t.Errorf("put through an expired lease: %v, want ErrLeaseGone", err)
	}
}

func TestRawWritesStayOutOfTheObjectsSpace(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	l, err := s.GrantLease(ctx, "leases/n1", nil, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GrantLease(ctx, "health/x", nil, time.Second); err == nil {
		t.Error("a lease granted outside leases/")
	}
	for _, path := range []string{"objects/Service/default/web", "meta/generation", "", "obj", "meta"} {
		if err := s.PutRaw(ctx, path, nil); err == nil {
			t.Errorf("PutRaw(%q) accepted", path)
		}
		if err := l.Put(ctx, path, nil); err == nil {
			t.Errorf("Lease.Put(%q) accepted", path)
		}
		if _, err := s.CommitChange(ctx, 0, Change{Prune: []string{path}}); err == nil {
			t.Errorf("prune of %q accepted", path)
		}
	}
}

// TestPruneGoesWithTheCommit deletes a service and prunes what it left behind in one commit:
// a neighbour whose name starts the same keeps its keys, and a stale commit prunes nothing.
func TestPruneGoesWithTheCommit(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Commit(ctx, 0, []Item{svcItem("web", "1"), svcItem("web2", "2")}, nil); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"health/default/web/n1/10.0.0.1", "health/default/web2/n1/10.0.0.2"} {
		if err := s.PutRaw(ctx, p, []byte("fail")); err != nil {
			t.Fatal(err)
		}
	}
	web := Key{Kind: "Service", Namespace: "default", Name: "web"}
	prune := Change{Deletes: []Key{web}, Prune: []string{"health/default/web/"}}
	if _, err := s.CommitChange(ctx, 0, prune); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale commit: %v, want ErrConflict", err)
	}
	if _, ok := rawValue(t, s, "health/default/web/n1/10.0.0.1"); !ok {
		t.Fatal("a refused commit pruned")
	}
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CommitChange(ctx, snap.Generation, prune); err != nil {
		t.Fatal(err)
	}
	if _, ok := rawValue(t, s, "health/default/web/n1/10.0.0.1"); ok {
		t.Error("the deleted service's record survived its commit")
	}
	if _, ok := rawValue(t, s, "health/default/web2/n1/10.0.0.2"); !ok {
		t.Error("the neighbour's record was pruned")
	}
}
