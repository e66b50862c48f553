package stream

import (
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
)

// frame is a StreamResponse already in protobuf encoding. Resources are encoded once by compute
// and the same bytes are spliced into the frame of every agent that needs them: an update to a
// thousand agents costs a thousand memory copies, not a thousand marshals.
type frame struct {
	b []byte
	// upserts and removals are counted for metrics and tests.
	upserts, removals int
}

// StreamResponse and Update field numbers, from agent.proto.
const (
	fieldResponseUpdate      = 1
	fieldUpdateGeneration    = 1
	fieldUpdateUpserts       = 2
	fieldUpdateRemovals      = 3
	fieldUpdateComplete      = 4
	fieldUpdateRevision      = 5
	fieldResponseHeldRequest = 2
	fieldHeldRequestBuckets  = 1
)

// updateFrame encodes StreamResponse{update: Update{...}}.
func updateFrame(gen uint64, upserts []*compute.Resource, removals []string, complete bool, revision uint64) *frame {
	var u []byte
	size := 32
	for _, r := range upserts {
		size += len(r.Wire) + 6
	}
	for _, n := range removals {
		size += len(n) + 4
	}
	u = make([]byte, 0, size)
	u = protowire.AppendTag(u, fieldUpdateGeneration, protowire.VarintType)
	u = protowire.AppendVarint(u, gen)
	for _, r := range upserts {
		u = protowire.AppendTag(u, fieldUpdateUpserts, protowire.BytesType)
		u = protowire.AppendBytes(u, r.Wire)
	}
	for _, n := range removals {
		u = protowire.AppendTag(u, fieldUpdateRemovals, protowire.BytesType)
		u = protowire.AppendString(u, n)
	}
	if complete {
		u = protowire.AppendTag(u, fieldUpdateComplete, protowire.VarintType)
		u = protowire.AppendVarint(u, 1)
	}
	if revision != 0 {
		u = protowire.AppendTag(u, fieldUpdateRevision, protowire.VarintType)
		u = protowire.AppendVarint(u, revision)
	}
	out := make([]byte, 0, len(u)+12)
	out = protowire.AppendTag(out, fieldResponseUpdate, protowire.BytesType)
	out = protowire.AppendBytes(out, u)
	return &frame{b: out, upserts: len(upserts), removals: len(removals)}
}

// heldRequestFrame encodes StreamResponse{held_request: HeldRequest{buckets}}.
func heldRequestFrame(buckets []uint32) *frame {
	var packed []byte
	for _, b := range buckets {
		packed = protowire.AppendVarint(packed, uint64(b))
	}
	var m []byte
	m = protowire.AppendTag(m, fieldHeldRequestBuckets, protowire.BytesType)
	m = protowire.AppendBytes(m, packed)
	out := protowire.AppendTag(nil, fieldResponseHeldRequest, protowire.BytesType)
	return &frame{b: protowire.AppendBytes(out, m)}
}

// codec is gRPC's proto codec that also sends frames as they are.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(proto.Name)} }

// Marshal passes frames through and marshals anything else as protobuf.
func (c codec) Marshal(v any) (mem.BufferSlice, error) {
	if f, ok := v.(*frame); ok {
		return mem.BufferSlice{mem.SliceBuffer(f.b)}, nil
	}
	return c.CodecV2.Marshal(v)
}
