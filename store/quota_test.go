package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// openSmall opens an embedded store in dir with a quota of a few MiB.
func openSmall(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Config{DataDir: dir, ClientURL: freePort(t), PeerURL: freePort(t),
		Log: slog.New(slog.DiscardHandler), EtcdLogLevel: "panic", QuotaBytes: 8 << 20, MaintainEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// commitOne stores one object of n bytes on top of the latest commit.
func commitOne(s *Store, name string, n int) error {
	ctx := context.Background()
	snap, err := s.Snapshot(ctx)
	if err != nil {
		return err
	}
	_, err = s.Commit(ctx, snap.Generation, []Item{svcItem(name, strings.Repeat("x", n))}, nil)
	return err
}

// TestAFullStoreRefusesWithTheWayOutAndRecoversAfterDeletes fills a store with a small quota
// until it refuses: the error names the quota, the size and the way out, not etcd's "database
// space exceeded". Deleting makes room: the next apply compacts and defragments and goes in.
func TestAFullStoreRefusesWithTheWayOutAndRecoversAfterDeletes(t *testing.T) {
	s := openSmall(t, t.TempDir())
	defer s.Close()
	ctx := context.Background()
	var stored []Key
	var err error
	for i := 0; err == nil; i++ {
		if i == 100 {
			t.Fatal("100 objects of 200 KiB went into a store of 8 MiB")
		}
		name := fmt.Sprint("big-", i)
		if err = commitOne(s, name, 200<<10); err == nil {
			stored = append(stored, svcItem(name, "").Key)
		}
	}
	if !errors.Is(err, ErrQuota) {
		t.Fatalf("full store: %v, want ErrQuota", err)
	}
	for _, want := range []string{"8.0 MiB quota", "the store holds", "delete objects", "--etcd-quota-bytes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	full, _ := s.size(ctx)
	if full.alarmed {
		t.Error("the refusal came from etcd's alarm, not before it")
	}
	// Deletes go through on a full store.
	snap, _ := s.Snapshot(ctx)
	if _, err := s.Commit(ctx, snap.Generation, nil, stored[:len(stored)-2]); err != nil {
		t.Fatalf("delete on a full store: %v", err)
	}
	if err := commitOne(s, "after", 200<<10); err != nil {
		t.Fatalf("apply after deletes: %v", err)
	}
	after, _ := s.size(ctx)
	t.Logf("store %d objects refused at %s (in use %s); after deleting all but 2 and one apply: %s (in use %s)",
		len(stored), mib(full.total), mib(full.inUse), mib(after.total), mib(after.inUse))
	if after.total >= full.total {
		t.Errorf("the file did not shrink: %s before, %s after", mib(full.total), mib(after.total))
	}
}

// TestTheSpaceAlarmIsDisarmedOnceThereIsRoom raises etcd's own alarm with writes that pass no
// check of the store's (as an external writer or health records in the reserve would): deletes
// still work, a restart compacts, defragments and disarms, so applies work again, and so does
// the store's own delete without a restart.
func TestTheSpaceAlarmIsDisarmedOnceThereIsRoom(t *testing.T) {
	dir := t.TempDir()
	s := openSmall(t, dir)
	ctx := context.Background()
	raiseAlarm(t, s)
	if err := commitOne(s, "refused", 10); !errors.Is(err, ErrQuota) || !strings.Contains(err.Error(), "--etcd-quota-bytes") {
		t.Errorf("apply under the alarm: %v, want ErrQuota with the way out", err)
	}
	// etcd lets deletes through under the alarm; the store's own deletes carry a generation,
	// which it does not, until the alarm is disarmed.
	if err := s.DeleteRaw(ctx, "fill/"); err != nil {
		t.Fatalf("delete under the alarm: %v", err)
	}
	s.Close()
	s = openSmall(t, dir)
	defer s.Close()
	if sz, _ := s.size(ctx); sz.alarmed {
		t.Fatalf("alarm still raised after a restart: %+v", sz)
	}
	if err := commitOne(s, "after", 10); err != nil {
		t.Fatalf("apply after the restart: %v", err)
	}
	// Without a restart: the store's own delete under the alarm compacts, defragments and
	// disarms (old revisions were what filled it), and applies work again.
	raiseAlarm(t, s)
	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Commit(ctx, snap.Generation, nil, []Key{svcItem("after", "").Key}); err != nil {
		t.Fatalf("delete under the alarm: %v", err)
	}
	if err := commitOne(s, "again", 10); err != nil {
		t.Fatalf("apply after a delete under the alarm: %v", err)
	}
}

// raiseAlarm fills s under fill/ (one key, rewritten: old revisions count until compacted) past
// its quota with writes that pass no check of the store's, until etcd raises its alarm.
func raiseAlarm(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	var err error
	for i := 0; err == nil; i++ {
		if i == 100 {
			t.Fatal("etcd took 100 MiB under an 8 MiB quota")
		}
		_, err = s.cli.Put(ctx, s.prefix+"fill/", strings.Repeat("y", 1<<20))
	}
	if sz, _ := s.size(ctx); !sz.alarmed {
		t.Fatalf("no alarm after %v", err)
	}
}

// TestTheStoreSizeIsAMetric reads the store's size, in-use share, quota and alarm from its
// collectors, as the brain's /metrics does.
func TestTheStoreSizeIsAMetric(t *testing.T) {
	s := openSmall(t, t.TempDir())
	defer s.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collectors()...)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		got[f.GetName()] = f.GetMetric()[0].GetGauge().GetValue()
	}
	if got["ganglion_store_quota_bytes"] != 8<<20 || got["ganglion_store_db_size_bytes"] == 0 ||
		got["ganglion_store_db_size_in_use_bytes"] == 0 || got["ganglion_store_space_alarm"] != 0 {
		t.Errorf("store metrics %v, want the 8 MiB quota, a size, a size in use and no alarm", got)
	}
}

// TestAHalfEmptyStoreIsDefragmented: after objects are deleted and history compacted (hourly),
// the file keeps its size until defragmented; maintenance does it once less than half is in use.
func TestAHalfEmptyStoreIsDefragmented(t *testing.T) {
	s, err := Open(context.Background(), Config{DataDir: t.TempDir(), ClientURL: freePort(t), PeerURL: freePort(t),
		Log: slog.New(slog.DiscardHandler), EtcdLogLevel: "panic", MaintainEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	var keys []Key
	for i := range 24 {
		name := fmt.Sprint("big-", i)
		if err := commitOne(s, name, 1<<20); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, svcItem(name, "").Key)
	}
	snap, _ := s.Snapshot(ctx)
	rev, err := s.Commit(ctx, snap.Generation, nil, keys)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	s.etcd.Server.Backend().ForceCommit()
	before, _ := s.size(ctx)
	if err := s.Maintain(ctx); err != nil {
		t.Fatal(err)
	}
	after, _ := s.size(ctx)
	t.Logf("24 MiB written, deleted and compacted: %d KiB (in use %d KiB) before maintenance, %d KiB after",
		before.total>>10, before.inUse>>10, after.total>>10)
	if after.total >= before.total/2 {
		t.Errorf("maintenance left the file at %s of %s (in use %s)", mib(after.total), mib(before.total), mib(before.inUse))
	}
}
