package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultMaintainEvery is how often the embedded store looks at its size.
const DefaultMaintainEvery = time.Minute

// defragShare: the file is defragmented when less than this share of it is in use. Hourly
// compaction frees pages inside the file, which bbolt reuses but never gives back; etcd's quota
// counts the file. A half-empty file is worth the pause: the embedded etcd serves nothing while
// it copies the live data (measured here: a 347 MiB file holding 100 MiB, 0.56 s).
const defragShare = 0.5

// defragMin: files smaller than this are left alone, whatever their share: the pause buys
// nothing.
const defragMin = 16 << 20

// sizes is the store's backend, as etcd's quota sees it.
type sizes struct {
	total, inUse int64
	alarmed      bool // etcd's NOSPACE alarm is raised: every write that adds is refused
	// alarmedBy are the members that raised it: each is disarmed by its ID.
	alarmedBy []uint64
}

// size reads the backend's size and alarms.
func (s *Store) size(ctx context.Context) (sizes, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ep := ""
	if eps := s.cli.Endpoints(); len(eps) > 0 {
		ep = eps[0]
	}
	st, err := s.cli.Status(ctx, ep)
	if err != nil {
		return sizes{}, fmt.Errorf("store: status: %w", err)
	}
	sz := sizes{total: st.DbSize, inUse: st.DbSizeInUse}
	alarms, err := s.cli.AlarmList(ctx)
	if err != nil {
		return sz, fmt.Errorf("store: alarms: %w", err)
	}
	for _, a := range alarms.Alarms {
		if a.Alarm == pb.AlarmType_NOSPACE {
			sz.alarmed = true
			sz.alarmedBy = append(sz.alarmedBy, a.MemberID)
		}
	}
	return sz, nil
}

// maintainLoop keeps the embedded store from filling up for good until ctx ends: every period,
// and at once when a write found it full, it runs Maintain.
func (s *Store) maintainLoop(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.kicks:
		}
		if err := s.Maintain(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("store maintenance failed; retried later", "err", err)
		}
	}
}

// kick asks the maintenance loop to run now, without waiting for it.
func (s *Store) kick() {
	select {
	case s.kicks <- struct{}{}:
	default:
	}
}

// Maintain makes room in the embedded store: near its quota, or with etcd's NOSPACE alarm
// raised, it compacts all history (watchers behind it relist); when the file is mostly free
// pages, it defragments; and once there is room again it disarms the alarm, which etcd never
// does by itself (so a full store stayed full across restarts). An external cluster is its
// operators' to maintain: Maintain does nothing there.
func (s *Store) Maintain(ctx context.Context) error { return s.maintain(ctx, 0) }

// maintain is Maintain making room for need bytes more.
func (s *Store) maintain(ctx context.Context, need int64) error {
	if s.etcd == nil {
		return nil
	}
	s.maintaining.Lock()
	defer s.maintaining.Unlock()
	s.roomMu.Lock()
	s.deletedSince, s.lastMaintained = false, time.Now()
	s.roomMu.Unlock()
	sz, err := s.size(ctx)
	if err != nil {
		return err
	}
	full := sz.alarmed || sz.total+need+reserve(s.quota) >= s.quota
	if full {
		if err := s.compactAll(ctx); err != nil {
			return err
		}
		if sz, err = s.size(ctx); err != nil {
			return err
		}
	}
	// Near the quota, any real gain is worth the pause; a store full of live data is not
	// rewritten every round for nothing.
	free := sz.total - sz.inUse
	if (full && free >= reserve(s.quota)/4) || (sz.total >= defragMin && float64(sz.inUse) < defragShare*float64(sz.total)) {
		if err := s.defragment(ctx, sz); err != nil {
			return err
		}
		if sz, err = s.size(ctx); err != nil {
			return err
		}
	}
	// Disarmed once below the quota, though maybe inside the reserve: registrations and deletes
	// then work again while checkRoom refuses applies with the way out; etcd raises the alarm
	// again if writes reach the quota.
	if sz.alarmed && sz.total < s.quota {
		for _, id := range sz.alarmedBy {
			if _, err := s.cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: id, Alarm: pb.AlarmType_NOSPACE}); err != nil {
				return fmt.Errorf("store: disarm the space alarm: %w", err)
			}
		}
		s.log.Warn("store space alarm disarmed: writes accepted again", "size", mib(sz.total), "quota", mib(s.quota))
	}
	return nil
}

// compactAll compacts at the current revision and waits until the backend has dropped what it
// removed, so that a defragmentation after it gives the space back.
func (s *Store) compactAll(ctx context.Context) error {
	resp, err := s.cli.Get(ctx, s.prefix+metaKey)
	if err != nil {
		return fmt.Errorf("store: read revision to compact: %w", err)
	}
	if _, err := s.cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil && !isCompacted(err) {
		return fmt.Errorf("store: compact at %d: %w", resp.Header.Revision, err)
	}
	s.log.Warn("store near its quota: all history compacted (watchers behind it relist)", "revision", resp.Header.Revision)
	return nil
}

// defragment rewrites the backend file without its free pages.
func (s *Store) defragment(ctx context.Context, before sizes) error {
	began := time.Now()
	// The etcd server's own, not the in-process client's maintenance API, which has no health
	// notifier to tell and fails on it.
	if err := s.etcd.Server.Defragment(); err != nil {
		return fmt.Errorf("store: defragment: %w", err)
	}
	s.metrics.defrags.Inc()
	after, err := s.size(ctx)
	if err == nil {
		s.log.Info("store defragmented", "before", mib(before.total), "after", mib(after.total), "took", time.Since(began).Round(time.Millisecond))
	}
	return nil
}

func isCompacted(err error) bool { return errors.Is(err, rpctypes.ErrCompacted) }
