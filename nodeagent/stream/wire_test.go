package stream

import (
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// withUnknown appends a field no version of agent.proto has, of a wire type the agent never reads.
func withUnknown(b []byte) []byte {
	b = protowire.AppendTag(b, 900, protowire.Fixed64Type)
	return protowire.AppendFixed64(b, 42)
}

func TestParseReadsWhatProtobufReads(t *testing.T) {
	upserts := []*v1.Resource{
		svcRes("ns/a/v4", "s1"),
		setRes("ns/a/v4", "cluster", "c1"),
		{Name: "ns/a/probes", Version: "p1", Content: &v1.Resource_Probes{Probes: &v1.ProbeSet{Namespace: "ns", Service: "a",
			Targets: []*v1.ProbeTarget{{Address: "10.0.0.1", Port: 80}}}}},
		{Name: "ns/a/dns", Version: "d1", Content: &v1.Resource_Dns{Dns: &v1.DNSRecords{Namespace: "ns", Name: "a"}}},
		{Name: "ns/a/announce", Version: "a1", Content: &v1.Resource_Announcement{Announcement: &v1.Announcement{Bgp: []string{"203.0.113.1"}}}},
		{Name: resname.NodeBGP, Version: "b1", Content: &v1.Resource_Bgp{Bgp: &v1.BGPConfig{LocalAsn: 64512}}},
		{Name: "ns/b/v4/service", Version: "empty"}, // no content at all
	}
	u := &v1.Update{Generation: 7, Upserts: upserts, Removals: []string{"ns/c/v4/service", "ns/c/v4/cluster"},
		SnapshotComplete: true, SourceRevision: 1234}
	// Unknown fields at every level are skipped: in each resource, in the update, in the response.
	var ub []byte
	ub = protowire.AppendTag(ub, 1, protowire.VarintType)
	ub = protowire.AppendVarint(ub, u.Generation)
	for _, res := range upserts {
		rb, err := proto.Marshal(res)
		if err != nil {
			t.Fatal(err)
		}
		ub = protowire.AppendTag(ub, 2, protowire.BytesType)
		ub = protowire.AppendBytes(ub, withUnknown(rb))
	}
	rest, _ := proto.Marshal(&v1.Update{Removals: u.Removals, SnapshotComplete: true, SourceRevision: u.SourceRevision})
	ub = withUnknown(append(ub, rest...))
	frame := protowire.AppendTag(nil, 1, protowire.BytesType)
	frame = withUnknown(protowire.AppendBytes(frame, ub))

	var resp response
	if err := resp.parse(frame); err != nil {
		t.Fatal(err)
	}
	got := resp.update
	if got == nil || resp.heldRequest != nil || got.generation != 7 || !got.complete || got.revision != 1234 ||
		!slices.Equal(got.removals, u.Removals) || len(got.upserts) != len(upserts) {
		t.Fatalf("parsed %+v", got)
	}
	for i, want := range upserts {
		g := got.upserts[i]
		m, err := (&record{version: g.version, content: g.content}).resource(g.name)
		if err != nil || !proto.Equal(m, want) {
			t.Errorf("upsert %d: %v (%v), want %v", i, m, err, want)
		}
	}

	hb, _ := proto.Marshal(&v1.StreamResponse{Message: &v1.StreamResponse_HeldRequest{HeldRequest: &v1.HeldRequest{Buckets: []uint32{3, 9}}}})
	resp = response{}
	if err := resp.parse(hb); err != nil || resp.update != nil || !slices.Equal(resp.heldRequest.GetBuckets(), []uint32{3, 9}) {
		t.Fatalf("held request: %v, %+v", err, resp)
	}
}

func TestParseRefusesWhatProtobufRefuses(t *testing.T) {
	good, _ := proto.Marshal(&v1.StreamResponse{Message: &v1.StreamResponse_Update{Update: &v1.Update{
		Upserts: []*v1.Resource{svcRes("ns/a/v4", "1")}, Removals: []string{"ns/b/v4/service"}}}})
	for name, b := range map[string][]byte{
		"truncated": good[:len(good)-3],
		"bad UTF-8 in a name": func() []byte {
			b, _ := proto.Marshal(&v1.StreamResponse{Message: &v1.StreamResponse_Update{Update: &v1.Update{
				Upserts: []*v1.Resource{{Name: "ns/a/v4/service", Version: "1"}}}}})
			i := slices.Index(b, 'a')
			b[i] = 0xff
			return b
		}(),
	} {
		var resp response
		err := resp.parse(b)
		perr := proto.Unmarshal(b, &v1.StreamResponse{})
		if err == nil || perr == nil {
			t.Errorf("%s: parse says %v, protobuf %v: both must refuse", name, err, perr)
		}
	}
}
