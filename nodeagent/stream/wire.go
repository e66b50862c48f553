package stream

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	protov2 "google.golang.org/protobuf/proto"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// The agent reads the brain's messages itself rather than through the generated types: an
// update's resources are kept as the bytes they arrived in (see record) and decoded only when a
// port they belong to is rebuilt, so nothing is decoded twice or held decoded. The wire format is
// agent.proto's, unchanged; what the agent sends is encoded by gRPC's protobuf codec.

// StreamResponse, Update and Resource field numbers, from agent.proto and state.proto.
const (
	fieldResponseUpdate      = 1
	fieldResponseHeldRequest = 2
	fieldUpdateGeneration    = 1
	fieldUpdateUpserts       = 2
	fieldUpdateRemovals      = 3
	fieldUpdateComplete      = 4
	fieldUpdateRevision      = 5
	fieldResourceName        = 1
	fieldResourceVersion     = 2
	fieldResourceService     = 3 // the first of the content oneof's fields
	fieldResourceEndpoints   = 4
	fieldResourceBGP         = 8 // the last
)

// response is a StreamResponse as the agent reads it: one of update and heldRequest is set.
type response struct {
	update      *update
	heldRequest *v1.HeldRequest
}

// update is an Update whose resources are still encoded.
type update struct {
	generation uint64
	upserts    []resource
	removals   []string
	complete   bool
	revision   uint64
}

// resource is a received Resource: its name, version and content field (tag included), copied
// out of the receive buffer.
type resource struct {
	name, version string
	content       []byte
}

// codec is gRPC's protobuf codec, except that it reads StreamResponses into responses.
type codec struct{ encoding.CodecV2 }

func newCodec() codec { return codec{encoding.GetCodecV2(proto.Name)} }

// Unmarshal reads a response; anything else is protobuf as usual.
func (c codec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*response)
	if !ok {
		return c.CodecV2.Unmarshal(data, v)
	}
	if len(data) == 1 {
		return r.parse(data[0].ReadOnlyData())
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return r.parse(buf.ReadOnlyData())
}

var errUTF8 = errors.New("string field contains invalid UTF-8")

// parse reads a StreamResponse, copying what it keeps: b is not the caller's after it returns.
// Fields it does not know are skipped, as protobuf skips them; of the oneof, the last wins.
func (r *response) parse(b []byte) error {
	f := fields{b: b, lenient: true}
	for f.next() {
		switch {
		case f.typ != protowire.BytesType:
		case f.num == fieldResponseUpdate:
			if r.update == nil {
				r.update = &update{}
			}
			r.heldRequest = nil
			if err := r.update.parse(f.bs); err != nil {
				return fmt.Errorf("update: %w", err)
			}
		case f.num == fieldResponseHeldRequest:
			if r.heldRequest == nil {
				r.heldRequest = &v1.HeldRequest{}
			}
			r.update = nil
			if err := (protov2.UnmarshalOptions{Merge: true}).Unmarshal(f.bs, r.heldRequest); err != nil {
				return fmt.Errorf("held request: %w", err)
			}
		}
	}
	return f.err
}

func (u *update) parse(b []byte) error {
	f := fields{b: b, lenient: true}
	for f.next() {
		switch {
		case f.typ == protowire.VarintType && f.num == fieldUpdateGeneration:
			u.generation = f.v
		case f.typ == protowire.VarintType && f.num == fieldUpdateComplete:
			u.complete = f.v != 0
		case f.typ == protowire.VarintType && f.num == fieldUpdateRevision:
			u.revision = f.v
		case f.typ == protowire.BytesType && f.num == fieldUpdateRemovals:
			if !utf8.Valid(f.bs) {
				return fmt.Errorf("removal: %w", errUTF8)
			}
			u.removals = append(u.removals, string(f.bs))
		case f.typ == protowire.BytesType && f.num == fieldUpdateUpserts:
			r, err := parseResource(f.bs)
			if err != nil {
				return fmt.Errorf("upsert: %w", err)
			}
			u.upserts = append(u.upserts, r)
		}
	}
	return f.err
}

// parseResource reads a Resource's name and version and keeps its content field as it is.
func parseResource(b []byte) (resource, error) {
	var r resource
	var content []byte
	f := fields{b: b, lenient: true}
	for at := f.b; f.next(); at = f.b {
		switch {
		case f.typ != protowire.BytesType:
		case f.num == fieldResourceName || f.num == fieldResourceVersion:
			if !utf8.Valid(f.bs) {
				return r, errUTF8
			}
			if f.num == fieldResourceName {
				r.name = string(f.bs)
			} else {
				r.version = string(f.bs)
			}
		case f.num >= fieldResourceService && f.num <= fieldResourceBGP:
			content = at[:len(at)-len(f.b)] // the whole field, tag included
		}
	}
	if content != nil {
		r.content = append(make([]byte, 0, len(content)), content...)
	}
	return r, f.err
}
