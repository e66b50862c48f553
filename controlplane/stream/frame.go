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

// updateFrame encodes StreamResponse{update: Update{...}} in one allocation: the Update's size is
// counted first so that its length prefix can be written before it.
func updateFrame(gen uint64, upserts []*compute.Resource, removals []string, complete bool, revision uint64) *frame {
	size := protowire.SizeTag(fieldUpdateGeneration) + protowire.SizeVarint(gen)
	for _, r := range upserts {
		size += protowire.SizeTag(fieldUpdateUpserts) + protowire.SizeBytes(len(r.Wire))
	}
	for _, n := range removals {
		size += protowire.SizeTag(fieldUpdateRemovals) + protowire.SizeBytes(len(n))
	}
	if complete {
		size += protowire.SizeTag(fieldUpdateComplete) + protowire.SizeVarint(1)
	}
	if revision != 0 {
		size += protowire.SizeTag(fieldUpdateRevision) + protowire.SizeVarint(revision)
	}
	u := make([]byte, 0, protowire.SizeTag(fieldResponseUpdate)+protowire.SizeBytes(size))
	u = protowire.AppendTag(u, fieldResponseUpdate, protowire.BytesType)
	u = protowire.AppendVarint(u, uint64(size))
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
	return &frame{b: u, upserts: len(upserts), removals: len(removals)}
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
