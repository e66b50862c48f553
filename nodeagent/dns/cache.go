package dns

import (
	"sync"
	"time"

	"github.com/miekg/dns"
)

// maxCacheTTL caps how long a forwarded answer is kept, whatever its TTL: 30 s, as NodeLocal
// DNSCache's default configuration, so a record changed upstream is seen within half a minute.
const maxCacheTTL = 30 * time.Second

// cacheKey identifies a forwarded question. The DO and CD bits change what an upstream answers.
type cacheKey struct {
	name   string
	qtype  uint16
	do, cd bool
}

type cacheEntry struct {
	msg             *dns.Msg
	stored, expires time.Time
}

// cache is a bounded TTL-respecting cache of forwarded answers.
type cache struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	entries map[cacheKey]cacheEntry
}

func newCache(size int, now func() time.Time) *cache {
	return &cache{max: size, now: now, entries: map[cacheKey]cacheEntry{}}
}

// get returns a copy of a live entry with its TTLs lowered by the time it has been held.
func (c *cache) get(k cacheKey) (*dns.Msg, bool) {
	c.mu.Lock()
	e, ok := c.entries[k]
	c.mu.Unlock()
	now := c.now()
	if !ok || !now.Before(e.expires) {
		return nil, false
	}
	m := e.msg.Copy()
	age := uint32(now.Sub(e.stored) / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			if h := rr.Header(); h.Rrtype != dns.TypeOPT {
				h.Ttl -= min(h.Ttl, age)
			}
		}
	}
	return m, true
}

// put keeps m for its TTL (capped) when it is a complete, cacheable answer. When full, it makes
// room by dropping entries (a map's iteration order is as good as random here).
func (c *cache) put(k cacheKey, m *dns.Msg) {
	ttl, ok := cacheTTL(m)
	if !ok || c.max <= 0 {
		return
	}
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		// Drop one arbitrary entry and whatever expired among the next few looked at: the scan
		// is bounded so that a full cache costs the same per answer as an empty one.
		scanned := 0
		for key, e := range c.entries {
			if scanned == 0 || !now.Before(e.expires) {
				delete(c.entries, key)
			}
			if scanned++; scanned >= 64 {
				break
			}
		}
	}
	c.entries[k] = cacheEntry{msg: m.Copy(), stored: now, expires: now.Add(ttl)}
}

// len is the number of entries held, live or not.
func (c *cache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// cacheTTL is how long m may be kept: the least TTL of its records, the SOA's minimum for a
// negative answer, capped by maxCacheTTL. Truncated answers and failures are not kept.
func cacheTTL(m *dns.Msg) (time.Duration, bool) {
	if m.Truncated || m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
		return 0, false
	}
	least := uint32(maxCacheTTL / time.Second)
	for _, sec := range [][]dns.RR{m.Answer, m.Ns, m.Extra} {
		for _, rr := range sec {
			h := rr.Header()
			switch {
			case h.Rrtype == dns.TypeOPT:
			case h.Rrtype == dns.TypeSOA:
				least = min(least, h.Ttl, rr.(*dns.SOA).Minttl)
			default:
				least = min(least, h.Ttl)
			}
		}
	}
	if least == 0 {
		return 0, false
	}
	return time.Duration(least) * time.Second, true
}
