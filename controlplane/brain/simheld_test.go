package brain_test

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ganglion-proxy/ganglion/internal/digest"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// simHeld is a simulated agent that keeps what it is sent, as names and versions only, and
// resumes from it as a real agent does: digests in its hello, its held list when asked.
// Thousands of agents hold the same twenty thousand names, so each agent's state is a map from
// a name's number in the fleet's table (simNames) to its version's 64 bits: no copy of a string
// and no pointer, so the agents' collector has nothing to scan there (with handles, marking five
// thousand agents' hundred million entries took the CPU the brain's latency was measured on).
type simHeld struct {
	held     map[uint32]uint64
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

func newSimHeld() *simHeld {
	return &simHeld{held: map[uint32]uint64{}}
}

func (h *simHeld) counts() (received, held int) { return h.received, len(h.held) }

func (h *simHeld) hello(node string) *v1.Hello {
	if h.sum == nil && len(h.held) > 0 {
		h.summarize()
	}
	h.buckets, h.received = len(h.sum), 0
	return &v1.Hello{NodeName: node, HeldDigests: h.sum, MinRevision: h.revision}
}

func (h *simHeld) summarize() {
	set := digest.New(digest.Buckets(len(h.held)))
	for name, version := range h.held {
		set.Add(simNames.name(name), versionText(version))
	}
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
	err := eachField(update, func(num protowire.Number, v uint64, b []byte) {
		switch num {
		case 1:
			ack.Generation = v
		case 2:
			name, version, err := nameVersion(b)
			bad = errors.Join(bad, err)
			if err == nil {
				h.put(name, version)
			}
		case 3:
			h.drop(b)
		case 4:
			complete = v != 0
		case 5:
			h.revision = max(h.revision, v)
		}
		if num == 2 || num == 3 {
			h.received++
		}
	})
	// The digest is kept up to date item by item (it is a sum per bucket), and computed again
	// only when the number of buckets a hello would use changes: recomputing it over twenty
	// thousand names after every update cost each agent milliseconds.
	if h.sum != nil && len(h.sum) != digest.Buckets(len(h.held)) {
		h.sum = nil
	}
	return ack, complete, errors.Join(err, bad)
}

// put holds version of name and keeps the digest, with one lookup of the name: a fleet of
// agents shares the brain's two cores, so what each does per item shows in the brain's latency.
func (h *simHeld) put(name []byte, version uint64) {
	id := simNames.id(name)
	old, had := h.held[id]
	h.held[id] = version
	if h.sum != nil {
		n := simNames.name(id)
		if had {
			h.sum[digest.Bucket(n, len(h.sum))] -= digest.Item(n, versionText(old))
		}
		digest.Set(h.sum).Add(n, versionText(version))
	}
}

// drop forgets name and takes its version out of the digest.
func (h *simHeld) drop(name []byte) {
	id := simNames.id(name)
	old, had := h.held[id]
	if !had {
		return
	}
	delete(h.held, id)
	if h.sum != nil {
		n := simNames.name(id)
		h.sum[digest.Bucket(n, len(h.sum))] -= digest.Item(n, versionText(old))
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
	for id, version := range h.held {
		if name := simNames.name(id); asked[digest.Bucket(name, h.buckets)] {
			list.Resources = append(list.Resources, &v1.HeldResource{Name: name, Version: versionText(version)})
		}
	}
	return &v1.StreamRequest{Message: &v1.StreamRequest_HeldList{HeldList: list}}, false, nil
}

// nameVersion reads a Resource's name and version, leaving its content undecoded. name is
// part of resource.
func nameVersion(resource []byte) (name []byte, version uint64, err error) {
	var text []byte
	err = eachField(resource, func(num protowire.Number, _ uint64, b []byte) {
		switch num {
		case 1:
			name = b
		case 2:
			text = b
		}
	})
	if err != nil {
		return nil, 0, err
	}
	if version, err = versionBits(text); err != nil || len(name) == 0 {
		return nil, 0, errors.Join(errBadFrame, err)
	}
	return name, version, nil
}

// A version is 64 bits in 16 hex digits (compute's canon.version): held as the bits, it is
// written back exactly.
func versionBits(text []byte) (uint64, error) {
	var b [8]byte
	if len(text) != 16 {
		return 0, fmt.Errorf("version %q is not 16 hex digits", text)
	}
	if _, err := hex.Decode(b[:], text); err != nil {
		return 0, fmt.Errorf("version %q: %w", text, err)
	}
	return binary.BigEndian.Uint64(b[:]), nil
}

func versionText(v uint64) string {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return hex.EncodeToString(b[:])
}

// simNames numbers the names a fleet's agents hold, for all of them: they are few (the
// workload's resources) and shared by every agent.
var simNames = &nameTable{ids: map[string]uint32{}}

type nameTable struct {
	mu    sync.RWMutex
	ids   map[string]uint32
	names []string
}

func (t *nameTable) id(name []byte) uint32 {
	t.mu.RLock()
	id, ok := t.ids[string(name)]
	t.mu.RUnlock()
	if ok {
		return id
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if id, ok = t.ids[string(name)]; !ok {
		id = uint32(len(t.names))
		t.names = append(t.names, string(name))
		t.ids[t.names[id]] = id
	}
	return id
}

func (t *nameTable) name(id uint32) string {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.names[id]
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
