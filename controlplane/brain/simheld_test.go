package brain_test

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strconv"
	"sync"
	"sync/atomic"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ganglion-proxy/ganglion/internal/digest"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// simHeld is a simulated agent that keeps what it is sent, as names and versions only, and
// resumes from it as a real agent does: digests in its hello, its held list when asked.
// Thousands of agents hold the same twenty thousand names, so an agent keeps a map of name
// hashes to version bits, with no pointer in it: the collector of a 5,000-agent fleet's process
// would otherwise scan 100 million entries (4 CPU-seconds a cycle, on the cores the brain is
// measured on). The names themselves are in the fleet's nameTable, read without a lock.
type simHeld struct {
	names    *nameTable
	held     map[uint64]uint64 // nameKey(name) -> the version's 64 bits
	revision uint64
	synced   bool
	// sum is the digest of held, kept up to date from the first whole state on: a real agent
	// computes it on its own core at hello, but here a thousand agents share two cores with the
	// brain whose restart is measured. Nil until then, or when its bucket count is stale.
	sum []uint64
	// buckets is how many digests the last hello sent: a held request counts in them.
	buckets int
	// received counts upserts and removals since the last hello: what a resume resent.
	received int
}

var errBadFrame = errors.New("malformed frame")

func newSimHeld(names *nameTable) *simHeld {
	return &simHeld{names: names, held: map[uint64]uint64{}}
}

func (h *simHeld) counts() (received, held int) { return h.received, len(h.held) }

// each calls fn with every held name and version.
func (h *simHeld) each(fn func(name, version string)) {
	for key, bits := range h.held {
		name, _ := h.names.lookup(key)
		fn(name, versionString(bits))
	}
}

func (h *simHeld) hello(node string) *v1.Hello {
	if h.sum == nil && len(h.held) > 0 {
		h.summarize()
	}
	h.buckets, h.received = len(h.sum), 0
	return &v1.Hello{NodeName: node, HeldDigests: h.sum, MinRevision: h.revision}
}

func (h *simHeld) summarize() {
	set := digest.New(digest.Buckets(len(h.held)))
	h.each(set.Add)
	h.sum = set
}

// answer handles one StreamResponse: an update is applied and acknowledged, a held request is
// answered with the held list; synced says the update completed a snapshot.
func (h *simHeld) answer(frame []byte) (reply *v1.StreamRequest, synced bool, err error) {
	var update, request []byte
	err = eachField(frame, func(num protowire.Number, _ uint64, b []byte) {
		switch num {
		case 1:
			update = b
		case 2:
			request = b
		}
	})
	switch {
	case err != nil:
		return nil, false, err
	case request != nil:
		return h.heldList(request)
	case update == nil:
		return nil, false, errBadFrame
	}
	ack, complete, err := h.apply(update)
	if err != nil {
		return nil, false, err
	}
	h.synced = h.synced || complete
	if h.synced && h.sum == nil { // the state is whole: what a hello would say of it now
		h.summarize()
	}
	return &v1.StreamRequest{Message: &v1.StreamRequest_Ack{Ack: ack}}, complete, nil
}

// apply records an Update's upserts (their names and versions) and removals.
func (h *simHeld) apply(update []byte) (*v1.Ack, bool, error) {
	ack, complete := &v1.Ack{}, false
	var bad error
	var learn map[uint64]string // names the fleet's table does not know yet
	err := eachField(update, func(num protowire.Number, v uint64, b []byte) {
		switch num {
		case 1:
			ack.Generation = v
		case 2:
			name, version, err := nameVersion(b)
			bits, perr := strconv.ParseUint(version, 16, 64)
			if err = errors.Join(err, perr); err != nil || len(version) != versionLen {
				bad = errors.Join(bad, err, errBadFrame)
				return
			}
			key := nameKey(name)
			switch known, ok := h.names.lookup(key); {
			case !ok:
				if learn == nil {
					learn = map[uint64]string{}
				}
				learn[key] = name
			case known != name:
				bad = errors.Join(bad, fmt.Errorf("names %q and %q share a hash", known, name))
			}
			h.put(key, name, bits, version)
		case 3:
			h.drop(string(b))
		case 4:
			complete = v != 0
		case 5:
			h.revision = max(h.revision, v)
		}
		if num == 2 || num == 3 {
			h.received++
		}
	})
	h.names.learn(learn)
	// The digest is kept up to date item by item (it is a sum per bucket), and computed again
	// only when the number of buckets a hello would use changes: recomputing it over twenty
	// thousand names after every update cost each agent milliseconds.
	if h.sum != nil && len(h.sum) != digest.Buckets(len(h.held)) {
		h.sum = nil
	}
	return ack, complete, errors.Join(err, bad)
}

// put holds version (bits, as text) of name and keeps the digest, with one lookup of the name:
// a fleet of agents shares the brain's two cores, so what each does per item shows in the
// brain's latency.
func (h *simHeld) put(key uint64, name string, bits uint64, version string) {
	old, had := h.held[key]
	h.held[key] = bits
	if h.sum != nil {
		if had {
			h.sum[digest.Bucket(name, len(h.sum))] -= digest.Item(name, versionString(old))
		}
		digest.Set(h.sum).Add(name, version)
	}
}

// drop forgets name and takes its version out of the digest.
func (h *simHeld) drop(name string) {
	key := nameKey(name)
	old, had := h.held[key]
	if !had {
		return
	}
	delete(h.held, key)
	if h.sum != nil {
		h.sum[digest.Bucket(name, len(h.sum))] -= digest.Item(name, versionString(old))
	}
}

// heldList answers a HeldRequest with what is held in the buckets it names.
func (h *simHeld) heldList(request []byte) (*v1.StreamRequest, bool, error) {
	asked := map[int]bool{}
	err := eachField(request, func(num protowire.Number, v uint64, b []byte) {
		if num != 1 {
			return
		}
		if b == nil { // an unpacked bucket
			asked[int(v)] = true
		}
		for len(b) > 0 {
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return
			}
			asked[int(v)], b = true, b[n:]
		}
	})
	if err != nil || h.buckets == 0 {
		return nil, false, fmt.Errorf("held request after a hello of %d buckets: %w", h.buckets, errors.Join(err, errBadFrame))
	}
	list := &v1.HeldList{}
	h.each(func(name, version string) {
		if asked[digest.Bucket(name, h.buckets)] {
			list.Resources = append(list.Resources, &v1.HeldResource{Name: name, Version: version})
		}
	})
	return &v1.StreamRequest{Message: &v1.StreamRequest_HeldList{HeldList: list}}, false, nil
}

// nameVersion reads a Resource's name and version, leaving its content undecoded.
func nameVersion(resource []byte) (name, version string, err error) {
	err = eachField(resource, func(num protowire.Number, _ uint64, b []byte) {
		switch num {
		case 1:
			name = string(b)
		case 2:
			version = string(b)
		}
	})
	if err == nil && (name == "" || version == "") {
		err = errBadFrame
	}
	return name, version, err
}

// eachField calls fn with each field of a protobuf message: its number, and its value for a
// varint or its bytes for a length-delimited field (nil for a varint).
func eachField(msg []byte, fn func(num protowire.Number, v uint64, b []byte)) error {
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return protowire.ParseError(n)
		}
		msg = msg[n:]
		switch typ {
		case protowire.VarintType:
			v, m := protowire.ConsumeVarint(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			fn(num, v, nil)
			n = m
		case protowire.BytesType:
			b, m := protowire.ConsumeBytes(msg)
			if m < 0 {
				return protowire.ParseError(m)
			}
			fn(num, 0, b)
			n = m
		default:
			n = protowire.ConsumeFieldValue(num, typ, msg)
			if n < 0 {
				return protowire.ParseError(n)
			}
		}
		msg = msg[n:]
	}
	return nil
}

// versionLen is the length of a resource version: 64 bits in hex (compute's canonical version).
// A held agent keeps the bits; anything else is refused as a malformed frame.
const versionLen = 16

func versionString(bits uint64) string {
	s := strconv.FormatUint(bits, 16)
	if len(s) < versionLen {
		s = "0000000000000000"[len(s):] + s
	}
	return s
}

// nameSeed keys the name hashes of one process, where all of a fleet's agents live.
var nameSeed = maphash.MakeSeed()

func nameKey(name string) uint64 { return maphash.String(nameSeed, name) }

// nameTable is a fleet's names by hash. Readers take the current map without a lock; a writer
// copies it with what it learned: names are learned in bulk at the first snapshot and rarely
// after, and a lock taken on every lookup was the fleet's hot spot (a 5,000-agent fan-out p99 of
// 478 ms against 333).
type nameTable struct {
	mu    sync.Mutex
	names atomic.Pointer[map[uint64]string]
}

func newNameTable() *nameTable {
	t := &nameTable{}
	t.names.Store(&map[uint64]string{})
	return t
}

func (t *nameTable) lookup(key uint64) (string, bool) {
	name, ok := (*t.names.Load())[key]
	return name, ok
}

// learn adds names the table lacks.
func (t *nameTable) learn(names map[uint64]string) {
	if len(names) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.names.Load()
	next := make(map[uint64]string, len(old)+len(names))
	for k, v := range old {
		next[k] = v
	}
	for k, v := range names {
		next[k] = v
	}
	t.names.Store(&next)
}
