package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// LeaseEvents tell a lease's holder what happens to it; any of them may be nil. They run on
// HoldLease's goroutine, so they must not block.
type LeaseEvents struct {
	// Granted runs once, when the lease is first granted: the handle then takes writes.
	Granted func(*Lease)
	// Lost runs when the lease is lost (revoked, expired, or unrenewable because etcd is away)
	// or could not be granted: what was written through it is gone or not written yet, until
	// Restored. It runs once per loss, not once per attempt to recover.
	Lost func(error)
	// Restored runs when a lost lease is back: renewed again, or replaced by a new lease with
	// everything put through the handle written again under it.
	Restored func()
}

// Renewal pauses: the first retry after a loss is quick (a revoked lease is back at once), and
// later ones back off so a long outage costs etcd, once it returns, a trickle of grants rather
// than a burst from every holder.
const (
	holdRetryMin = 100 * time.Millisecond
	holdRetryMax = 5 * time.Second
)

// HoldLease writes value at path under a lease of ttl and holds it for as long as ctx lives:
// renewed while etcd answers, and re-established after any loss, whatever its length, so that a
// holder whose ctx lives stays registered once etcd is back. It returns when ctx ends (nil), or
// at once for a path outside leases/.
func (s *Store) HoldLease(ctx context.Context, path string, value []byte, ttl time.Duration, ev LeaseEvents) error {
	if err := checkLeasePath(path); err != nil {
		return err
	}
	var l *Lease
	for pause := holdRetryMin; l == nil; pause = nextPause(pause) {
		var err error
		if l, err = s.GrantLease(ctx, path, value, ttl); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if pause == holdRetryMin {
				call(ev.Lost, err)
			}
			s.log.Debug("lease not granted yet", "path", path, "err", err)
			if !sleep(ctx, pause) {
				return nil
			}
		}
	}
	if ev.Granted != nil {
		ev.Granted(l)
	}
	return l.Hold(ctx, ev)
}

// Hold keeps the lease for as long as ctx lives, recovering from losses as HoldLease does. Only
// ev.Lost and ev.Restored are used.
func (l *Lease) Hold(ctx context.Context, ev LeaseEvents) error {
	go l.keepRegistered(ctx)
	pause := holdRetryMin
	for {
		began := time.Now()
		err := l.KeepAlive(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("store: lease %x of %s ended: %w", l.current(), l.path, ErrLeaseGone)
		}
		call(ev.Lost, err)
		// A lease lost again right after it came back must not make this a busy loop.
		if time.Since(began) < l.ttl {
			if !sleep(ctx, pause) {
				return nil
			}
			pause = nextPause(pause)
		} else {
			pause = holdRetryMin
		}
		if !l.recover(ctx) {
			return nil
		}
		if ev.Restored != nil {
			ev.Restored()
		}
	}
}

// keepRegistered writes the registration again whenever it is deleted while the lease is held.
// Holders of one path overwrite each other (a node's old stream and its new one, on this replica
// or another): when the last writer's lease ends, the key goes although another holder is still
// up, and its node would be taken down while connected. A deletion by the loss of this lease
// itself fails to put here and is Hold's to repair.
func (l *Lease) keepRegistered(ctx context.Context) {
	key := l.s.prefix + l.path
	for pause := holdRetryMin; ctx.Err() == nil; pause = nextPause(pause) {
		for resp := range l.s.cli.Watch(ctx, key, clientv3.WithFilterPut()) {
			if resp.Err() != nil {
				break // compacted or cancelled: watch again from now
			}
			if len(resp.Events) > 0 {
				pause = holdRetryMin
				if err := l.putRegistration(ctx); err != nil {
					l.s.log.Debug("registration not written back", "path", l.path, "err", err)
				}
			}
		}
		if !sleep(ctx, pause) {
			return
		}
	}
}

// putRegistration writes the registration under the handle's lease.
func (l *Lease) putRegistration(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	value, ok := l.kept[l.path]
	if !ok {
		return nil // deleted through the handle: its holder wants it gone
	}
	if _, err := l.s.cli.Put(ctx, l.s.prefix+l.path, string(value), clientv3.WithLease(l.current())); err != nil {
		return fmt.Errorf("store: put %s: %w", l.path, err)
	}
	return nil
}

// recover brings the lost lease back, retrying with backoff until it is back (true) or ctx ends.
func (l *Lease) recover(ctx context.Context) bool {
	for pause := holdRetryMin; ; pause = nextPause(pause) {
		err := l.reestablish(ctx)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		l.s.log.Debug("lease not re-established yet", "path", l.path, "err", err)
		if !sleep(ctx, pause) {
			return false
		}
	}
}

// reestablish renews the handle's lease if etcd still has it (an outage ends the client's
// keep-alive after a TTL, but an etcd that lost its leader extends leases when a new one is
// elected), or grants a new one; then it writes every kept key again under it: a key whose put
// failed during the outage, or that went with the old lease, is back.
func (l *Lease) reestablish(ctx context.Context) error {
	id := l.current()
	ttl, err := l.s.cli.TimeToLive(ctx, id)
	if err != nil {
		return fmt.Errorf("store: look up lease %x: %w", id, err)
	}
	if ttl.TTL <= 0 {
		granted, err := l.s.cli.Grant(ctx, int64(max(l.ttl/time.Second, 1)))
		if isNoSpace(err) {
			l.s.kick() // etcd's space alarm refuses grants too: make room now
		}
		if err != nil {
			return fmt.Errorf("store: grant lease for %s: %w", l.path, err)
		}
		id = granted.ID
	}
	return l.rewrite(ctx, id)
}

// rewriteBatch keeps each rewrite transaction under etcd's limit on operations per transaction
// (128 by default): a node may have more failing backends than that.
const rewriteBatch = 100

// rewrite puts every kept key under id, then makes id the handle's lease. A Put or Delete through
// the handle waits for it, so a key deleted meanwhile is not rewritten, and nothing is put under
// the lost lease meanwhile.
func (l *Lease) rewrite(ctx context.Context, id clientv3.LeaseID) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	ops := make([]clientv3.Op, 0, len(l.kept))
	for path, value := range l.kept {
		ops = append(ops, clientv3.OpPut(l.s.prefix+path, string(value), clientv3.WithLease(id)))
	}
	for len(ops) > 0 {
		n := min(len(ops), rewriteBatch)
		if _, err := l.s.cli.Txn(ctx).Then(ops[:n]...).Commit(); err != nil {
			return fmt.Errorf("store: rewrite keys of %s under lease %x: %w", l.path, id, err)
		}
		ops = ops[n:]
	}
	l.id.Store(int64(id))
	return nil
}

// checkLeasePath refuses a registration outside leases/, where the brain looks for nodes.
func checkLeasePath(path string) error {
	if !strings.HasPrefix(path, leasesSpace) {
		return fmt.Errorf("store: %s is not a lease path", path)
	}
	return nil
}

func call(f func(error), err error) {
	if f != nil && !errors.Is(err, context.Canceled) {
		f(err)
	}
}

// nextPause doubles a retry pause up to holdRetryMax.
func nextPause(p time.Duration) time.Duration { return min(2*p, holdRetryMax) }

// sleep waits about d, jittered so that holders that lost their leases together do not retry
// together; false when ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d/2 + rand.N(d))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
