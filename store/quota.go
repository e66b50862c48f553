package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// ErrQuota is returned by a commit the store has no room for: the error names the quota, the
// size and the way out.
var ErrQuota = errors.New("store full")

// DefaultQuotaBytes is the embedded etcd's backend quota: etcd's own default.
const DefaultQuotaBytes = 2 << 30

// Cost estimates of etcd's quota check (server/storage/quota.go): each put costs its key and
// value and this much metadata.
const kvOverhead = 256

// reserve is the room kept free below the quota for what must go on when objects no longer fit:
// node registrations, health records, and the generation a delete writes. Without it the first
// refused apply would be etcd's own alarm, and then nothing but reads works.
func reserve(quota int64) int64 { return min(quota/10, 64<<20) }

// cost is what etcd's quota check counts for the puts of a commit.
func (s *Store) cost(c Change) int64 {
	n := int64(kvOverhead + len(s.prefix) + len(metaKey))
	for _, p := range c.Puts {
		n += int64(kvOverhead + len(s.prefix) + len(p.path()) + len(p.Value))
	}
	return n
}

// checkRoom refuses a change that would take the store past its quota less the reserve, after
// trying to make room: compaction and defragmentation give back what deleted objects and old
// revisions hold (etcd counts the file's size, which only defragmentation shrinks). A change
// that only deletes always passes: deleting is the way out.
func (s *Store) checkRoom(ctx context.Context, c Change) error {
	if s.quota <= 0 || len(c.Puts) == 0 {
		return nil
	}
	// bbolt writes a change to new pages before it frees the old ones: the file grows by about
	// twice what etcd's check counts.
	cost := 2 * s.cost(c)
	limit := s.quota - reserve(s.quota)
	sz, err := s.size(ctx)
	if err == nil && sz.total+cost > limit/2 && s.etcd != nil {
		// etcd updates the size it reports when its backend commits (every 100ms): near the
		// quota, a size that leaves out the last writes would let this one through to etcd's
		// own check, and its alarm.
		s.etcd.Server.Backend().ForceCommit()
		sz, err = s.size(ctx)
	}
	if err != nil || sz.total+cost <= limit {
		return nil // unknown size: etcd's own check decides
	}
	if s.worthMaintaining(sz.alarmed) {
		if err := s.maintain(ctx, cost); err != nil {
			s.log.Warn("store maintenance to make room failed", "err", err)
		}
		if sz, err = s.size(ctx); err != nil || sz.total+cost <= limit {
			return nil
		}
	}
	return s.quotaError(sz.total, cost)
}

// worthMaintaining says whether a full store may have room again: something was deleted since
// the last maintenance, or it was long ago (another replica may have deleted), or a few seconds
// ago with etcd's alarm raised (which stops registrations too). A full store does not compact
// and defragment again for every refused apply.
func (s *Store) worthMaintaining(alarmed bool) bool {
	s.roomMu.Lock()
	defer s.roomMu.Unlock()
	since := time.Since(s.lastMaintained)
	return s.deletedSince || since > DefaultMaintainEvery || (alarmed && since > alarmedRetry)
}

// alarmedRetry is how often a store whose alarm is raised tries to make room when writes come.
const alarmedRetry = 5 * time.Second

// deleted notes a committed deletion: a full store may have room again.
func (s *Store) deleted() {
	s.roomMu.Lock()
	defer s.roomMu.Unlock()
	s.deletedSince = true
}

// quotaError says the store is full, by how much, and what to do.
func (s *Store) quotaError(size, cost int64) error {
	return fmt.Errorf("%w: the store holds %s of its %s quota (%s kept free for node registrations and deletes) "+
		"and this change adds about %s; delete objects no longer needed (their space comes back by automatic "+
		"compaction and defragmentation) or raise --etcd-quota-bytes (the embedded etcd's; an external "+
		"cluster's is its --quota-backend-bytes)", ErrQuota, mib(size), mib(s.quota), mib(reserve(s.quota)), mib(cost))
}

// noSpace turns etcd's own "database space exceeded" into ErrQuota with the way out, or returns
// err: the alarm came first (an external cluster's quota, or writes outside objects filling the
// reserve).
func (s *Store) noSpace(ctx context.Context, err error) error {
	if !isNoSpace(err) {
		return err
	}
	s.kick()
	var size int64
	if sz, serr := s.size(ctx); serr == nil {
		size = sz.total
	}
	return fmt.Errorf("%w: etcd refused the write, its space quota is exhausted (database %s); "+
		"delete objects no longer needed and the store compacts, defragments and disarms the alarm "+
		"(an external cluster: etcdctl compact, defrag, alarm disarm), or raise the quota "+
		"(--etcd-quota-bytes, or the cluster's --quota-backend-bytes)", ErrQuota, mib(size))
}

func isNoSpace(err error) bool {
	return err != nil && (errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) ||
		strings.Contains(err.Error(), "database space exceeded"))
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
