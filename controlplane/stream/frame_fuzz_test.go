package stream

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// update is what an update frame carries, read back field by field.
type update struct {
	gen      uint64
	upserts  [][]byte
	removals []string
	complete bool
	revision uint64
}

// errFrame is what readUpdate returns for bytes that are not an update frame.
var errFrame = errors.New("not an update frame")

// readUpdate reads a StreamResponse{update} at the wire level, as an agent's protobuf runtime
// would, but keeping each upsert's bytes as they are (the frame splices them; it must not change
// them by one byte).
func readUpdate(b []byte) (update, error) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != fieldResponseUpdate || typ != protowire.BytesType {
		return update{}, fmt.Errorf("%w: response tag", errFrame)
	}
	body, m := protowire.ConsumeBytes(b[n:])
	if m < 0 || n+m != len(b) {
		return update{}, fmt.Errorf("%w: response length", errFrame)
	}
	var u update
	for len(body) > 0 {
		num, typ, n := protowire.ConsumeTag(body)
		if n < 0 {
			return update{}, fmt.Errorf("%w: update tag", errFrame)
		}
		body = body[n:]
		var v uint64
		var raw []byte
		if typ == protowire.BytesType {
			raw, n = protowire.ConsumeBytes(body)
		} else {
			v, n = protowire.ConsumeVarint(body)
		}
		if n < 0 {
			return update{}, fmt.Errorf("%w: field %d", errFrame, num)
		}
		body = body[n:]
		switch num {
		case fieldUpdateGeneration:
			u.gen = v
		case fieldUpdateUpserts:
			u.upserts = append(u.upserts, raw)
		case fieldUpdateRemovals:
			u.removals = append(u.removals, string(raw))
		case fieldUpdateComplete:
			u.complete = v != 0
		case fieldUpdateRevision:
			u.revision = v
		}
	}
	return u, nil
}

// splitWire cuts fuzz bytes into up to three resources' wire encodings at the 0xff bytes.
func splitWire(b []byte) []*compute.Resource {
	var out []*compute.Resource
	for i, w := range bytes.SplitN(b, []byte{0xff}, 3) {
		out = append(out, &compute.Resource{Name: fmt.Sprint(i), Wire: w})
	}
	return out
}

// FuzzUpdateFrame encodes arbitrary updates, including upserts whose bytes are not a Resource at
// all, and reads them back: every field comes back exactly, and each upsert's bytes unchanged.
// When the parts are valid (the only case compute builds: its Wire is proto.Marshal of a Resource,
// its names valid UTF-8), protobuf decodes the frame to the same update.
func FuzzUpdateFrame(f *testing.F) {
	res, _ := proto.Marshal(&v1.Resource{Name: "ns/a/v4/service", Version: "abc",
		Content: &v1.Resource_Endpoints{Endpoints: &v1.EndpointSet{Backends: []*v1.Backend{{Address: "10.0.0.1", Port: 80}}}}})
	f.Add(uint64(7), res, "ns/b/v4/cluster", true, uint64(42))
	f.Add(uint64(0), []byte{}, "", false, uint64(0))
	f.Add(uint64(1<<63), append(append(res, 0xff), res...), "ns/c/probes\xff", false, uint64(1))
	f.Fuzz(func(t *testing.T, gen uint64, wire []byte, removal string, complete bool, revision uint64) {
		upserts := splitWire(wire)
		removals := []string{removal, removal + "/x"}
		fr := updateFrame(gen, upserts, removals, complete, revision)
		if fr.upserts != len(upserts) || fr.removals != len(removals) {
			t.Fatalf("frame counts %d upserts, %d removals; want %d, %d", fr.upserts, fr.removals, len(upserts), len(removals))
		}
		got, err := readUpdate(fr.b)
		if err != nil {
			t.Fatalf("reading the frame back: %v (frame %x)", err, fr.b)
		}
		want := update{gen: gen, complete: complete, revision: revision, removals: removals}
		for _, r := range upserts {
			want.upserts = append(want.upserts, r.Wire)
		}
		if got.gen != want.gen || got.complete != want.complete || got.revision != want.revision ||
			!slices.Equal(got.removals, want.removals) || !slices.EqualFunc(got.upserts, want.upserts, bytes.Equal) {
			t.Fatalf("frame reads back as %+v, want %+v", got, want)
		}
		checkDecodes(t, fr, upserts, removals, want)
	})
}

// checkDecodes requires protobuf to decode a frame built from valid parts to the update it says.
func checkDecodes(t *testing.T, fr *frame, upserts []*compute.Resource, removals []string, want update) {
	var msgs []*v1.Resource
	for _, r := range upserts {
		m := &v1.Resource{}
		if proto.Unmarshal(r.Wire, m) != nil {
			return
		}
		msgs = append(msgs, m)
	}
	for _, n := range removals {
		if !utf8.ValidString(n) {
			return
		}
	}
	var got v1.StreamResponse
	if err := proto.Unmarshal(fr.b, &got); err != nil {
		t.Fatalf("a frame of valid parts does not decode: %v", err)
	}
	u := got.GetUpdate()
	if u.GetGeneration() != want.gen || u.GetSnapshotComplete() != want.complete || u.GetSourceRevision() != want.revision ||
		!slices.Equal(u.GetRemovals(), want.removals) || !slices.EqualFunc(u.GetUpserts(), msgs, func(a, b *v1.Resource) bool { return proto.Equal(a, b) }) {
		t.Fatalf("frame decodes to %v", u)
	}
}

// FuzzHeldRequestFrame: any list of buckets comes back in order.
func FuzzHeldRequestFrame(f *testing.F) {
	f.Add([]byte{3, 0, 0, 0, 44, 1, 0, 0})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		var buckets []uint32
		for i := 0; i+4 <= len(raw); i += 4 {
			buckets = append(buckets, uint32(raw[i])|uint32(raw[i+1])<<8|uint32(raw[i+2])<<16|uint32(raw[i+3])<<24)
		}
		var got v1.StreamResponse
		if err := proto.Unmarshal(heldRequestFrame(buckets).b, &got); err != nil {
			t.Fatalf("held request of %v does not decode: %v", buckets, err)
		}
		hr := got.GetHeldRequest()
		if hr == nil || !slices.Equal(hr.GetBuckets(), buckets) {
			t.Fatalf("held request of %v decodes to %v", buckets, &got)
		}
	})
}

// FuzzDecodeFrame feeds malformed frames to the decoder an agent uses (gRPC's proto codec, as
// newCodec wraps it): it never panics, and what it accepts re-encodes to a frame that decodes
// to an equal message.
func FuzzDecodeFrame(f *testing.F) {
	res := &compute.Resource{Wire: []byte{0x0a, 0x01, 'a'}}
	f.Add(updateFrame(3, []*compute.Resource{res}, []string{"r"}, true, 9).b)
	f.Add(heldRequestFrame([]uint32{1, 2}).b)
	f.Add([]byte{0x0a, 0x80})
	c := newCodec()
	f.Fuzz(func(t *testing.T, b []byte) {
		var got v1.StreamResponse
		if err := proto.Unmarshal(b, &got); err != nil {
			return
		}
		again, err := c.Marshal(&got)
		if err != nil {
			t.Fatalf("re-encoding an accepted frame: %v", err)
		}
		var back v1.StreamResponse
		if err := proto.Unmarshal(again.Materialize(), &back); err != nil || !proto.Equal(&got, &back) {
			t.Fatalf("re-encoded frame decodes to %v (%v), want %v", &back, err, &got)
		}
	})
}

// TestCodecPassesFramesThrough: a frame goes out as its own bytes, anything else as protobuf.
func TestCodecPassesFramesThrough(t *testing.T) {
	c := newCodec()
	fr := heldRequestFrame([]uint32{5})
	out, err := c.Marshal(fr)
	if err != nil || !bytes.Equal(out.Materialize(), fr.b) {
		t.Fatalf("frame marshals to %x (%v), want %x", out.Materialize(), err, fr.b)
	}
	msg := &v1.StreamResponse{Message: &v1.StreamResponse_HeldRequest{HeldRequest: &v1.HeldRequest{Buckets: []uint32{5}}}}
	out, err = c.Marshal(msg)
	if err != nil || !bytes.Equal(out.Materialize(), fr.b) {
		t.Fatalf("message marshals to %x (%v), want the frame's %x", out.Materialize(), err, fr.b)
	}
}
