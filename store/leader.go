package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// ErrNoLeader is returned, at once, by the reads every admin call starts with when etcd has no
// leader (its quorum is lost): without this check a call waits etcd's request timeout or its
// caller's deadline while the client retries.
var ErrNoLeader = errors.New("store: etcd has no leader (its quorum is lost?): admin calls are refused until it recovers; agents keep their rules")

// leaderWait bounds the check: a healthy member answers in milliseconds, and one without a
// leader answers "no leader" at once, which the etcd client retries until this bound.
const leaderWait = 1500 * time.Millisecond

// requireLeader checks, with a tiny read that only a member with a leader serves, that the
// store can answer before a call reads or writes anything.
func (s *Store) requireLeader(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), leaderWait)
	defer cancel()
	_, err := s.cli.Get(cctx, s.prefix+metaKey, clientv3.WithCountOnly())
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case errors.Is(err, rpctypes.ErrNoLeader), errors.Is(err, context.DeadlineExceeded), errors.Is(cctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("%w (no answer with a leader within %s: %v)", ErrNoLeader, leaderWait, err)
	}
	return fmt.Errorf("store: %w", err)
}
