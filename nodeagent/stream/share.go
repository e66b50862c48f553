package stream

import (
	"runtime"
	"sync"
	"weak"
)

// Share is a table through which the agents of one process hold one copy of each resource
// version between them. It is for processes that run many agents (test fleets and benchmarks):
// a thousand agents would otherwise hold a thousand copies of the same state, where agents on
// nodes of their own share nothing. An agent on its own node has no use for it.
//
// The table holds its records weakly: one goes when no agent holds it any more, so the table
// follows the agents' state, not its history. Records are never modified once made.
type Share struct {
	mu sync.Mutex
	m  map[shareKey]weak.Pointer[record]
}

type shareKey struct{ name, version string }

// NewShare returns an empty table.
func NewShare() *Share { return &Share{m: map[shareKey]weak.Pointer[record]{}} }

// record returns the table's record of r's name and version, made from r if it has none.
func (s *Share) record(r resource) *record {
	key := shareKey{r.name, r.version}
	s.mu.Lock()
	defer s.mu.Unlock()
	if have := s.m[key].Value(); have != nil {
		return have
	}
	rec := &record{version: r.version, content: r.content}
	wp := weak.Make(rec)
	s.m[key] = wp
	runtime.AddCleanup(rec, s.forget, shareEntry{key, wp})
	return rec
}

// shareEntry is a record the collector found unreachable.
type shareEntry struct {
	key shareKey
	wp  weak.Pointer[record]
}

// forget drops an entry, unless the version was recorded again since.
func (s *Share) forget(e shareEntry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m[e.key] == e.wp {
		delete(s.m, e.key)
	}
}
