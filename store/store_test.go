package store

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

func freePort(t *testing.T) string {
	t.Helper()
	return "http://" + testenv.FreeAddr(t)
}

func openEmbedded(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{DataDir: dir, ClientURL: freePort(t), PeerURL: freePort(t), Log: slog.New(slog.DiscardHandler), EtcdLogLevel: "panic"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func svcItem(name, value string) Item {
	return Item{Key: Key{Kind: "Service", Namespace: "default", Name: name}, Value: []byte(value)}
}

func TestCommitIsAtomicAndDurableAcrossRestarts(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	ctx := context.Background()
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, snap.Generation, []Item{svcItem("a", "1"), svcItem("b", "2")}, nil); err != nil {
		t.Fatal(err)
	}
	// A commit based on a stale snapshot is refused and writes nothing.
	if _, err := s.Commit(ctx, snap.Generation, []Item{svcItem("c", "3")}, nil); err != ErrConflict {
		t.Fatalf("stale commit: %v, want ErrConflict", err)
	}
	s.Close()

	s = openEmbedded(t, dir)
	defer s.Close()
	snap, err = s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Items) != 2 || string(snap.Items[0].Value) != "1" || snap.Items[1].Name != "b" {
		t.Errorf("after restart: %+v", snap.Items)
	}
}

// watcher collects batches from Watch.
type watcher struct {
	batches chan Batch
	cancel  context.CancelFunc
}

func watch(t *testing.T, s *Store) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{batches: make(chan Batch, 100), cancel: cancel}
	go s.Watch(ctx, func(b Batch) { w.batches <- b })
	t.Cleanup(cancel)
	return w
}

func (w *watcher) next(t *testing.T) Batch {
	t.Helper()
	select {
	case b := <-w.batches:
		return b
	case <-time.After(20 * time.Second):
		t.Fatal("no batch from the watch")
		return Batch{}
	}
}

func TestWatchListsThenStreamsChanges(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Commit(ctx, 0, []Item{svcItem("a", "1")}, nil); err != nil {
		t.Fatal(err)
	}
	w := watch(t, s)
	first := w.next(t)
	if !first.Reset || len(first.Events) != 2 { // the object and the commit generation
		t.Fatalf("first batch %+v, want a reset with the state", first)
	}
	snap, _ := s.Snapshot(ctx)
	if _, err := s.Commit(ctx, snap.Generation, nil, []Key{{Kind: "Service", Namespace: "default", Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	b := w.next(t)
	var deleted bool
	for _, e := range b.Events {
		if k, ok := e.Object(); ok && e.Delete && k.Name == "a" {
			deleted = true
		}
	}
	if b.Reset || !deleted {
		t.Errorf("batch %+v, want the deletion of a", b)
	}
}

// TestWatchResumingBehindACompactionRelists resumes a watch from a revision that compaction has
// removed, as a brain that was away for long does: it must relist, not miss history.
func TestWatchResumingBehindACompactionRelists(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	var rev int64
	for i := range 5 {
		snap, _ := s.Snapshot(ctx)
		var err error
		if rev, err = s.Commit(ctx, snap.Generation, []Item{svcItem("x", fmt.Sprint(i))}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Client().Compact(ctx, rev); err != nil {
		t.Fatal(err)
	}
	got := make(chan Batch, 10)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.watchFrom(wctx, 1, func(b Batch) { got <- b })
	select {
	case b := <-got:
		if !b.Reset {
			t.Fatalf("a watch from a compacted revision delivered %+v, want a relist", b)
		}
		var value string
		for _, e := range b.Events {
			if k, ok := e.Object(); ok && k.Name == "x" {
				value = string(e.Value)
			}
		}
		if value != "4" {
			t.Errorf("relisted x = %q, want the latest 4", value)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no relist after compaction")
	}
}

// TestWatchResumesFromARevision resumes a watch after a break: it must deliver exactly what
// happened since, not the whole state again.
func TestWatchResumesFromARevision(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	r1, err := s.Commit(ctx, 0, []Item{svcItem("a", "1")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap, _ := s.Snapshot(ctx)
	if _, err := s.Commit(ctx, snap.Generation, []Item{svcItem("b", "2")}, nil); err != nil {
		t.Fatal(err)
	}
	got := make(chan Batch, 10)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go s.watchFrom(wctx, r1, func(b Batch) { got <- b })
	select {
	case b := <-got:
		var names []string
		for _, e := range b.Events {
			if k, ok := e.Object(); ok {
				names = append(names, k.Name)
			}
		}
		if b.Reset || len(names) != 1 || names[0] != "b" {
			t.Errorf("resumed batch reset=%v objects %v, want only b", b.Reset, names)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("nothing delivered")
	}
}
