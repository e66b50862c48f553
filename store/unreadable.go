package store

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// unreadable counts stored objects their readers skipped: the store keeps documents opaque, so
// only a caller can tell one is corrupt, but the count belongs with the store's other figures.
type unreadable struct {
	once    sync.Once
	skipped prometheus.Counter
}

func (u *unreadable) counter() prometheus.Counter {
	u.once.Do(func() {
		u.skipped = prometheus.NewCounter(prometheus.CounterOpts{
			Name: "ganglion_store_objects_unreadable_total",
			Help: "Stored objects skipped because they could not be read (each read counts); delete or re-apply them.",
		})
	})
	return u.skipped
}

// SkipUnreadable records that the object at k could not be read and is skipped: logged with the
// way out, and counted. One corrupt object must not block reading the others, and an operator
// must hear of it.
func (s *Store) SkipUnreadable(k Key, err error) {
	s.unreadable.counter().Inc()
	s.log.Error("stored object unreadable; skipped (delete it, or apply a good one over it)",
		"kind", k.Kind, "namespace", k.Namespace, "name", k.Name, "err", err)
}
