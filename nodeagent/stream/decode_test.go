package stream

import (
	"math/rand/v2"
	"slices"
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// The fast decoders read the fields they know; a field added to state.proto would be handed to
// protobuf (correct, but slow) without this test failing first.
func TestFastDecodersKnowEveryField(t *testing.T) {
	known := map[protoreflect.ProtoMessage][]protowire.Number{
		&v1.EndpointSet{}:     {1, 2, 3},
		&v1.Backend{}:         {1, 2, 3, 4},
		&v1.ServicePort{}:     {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11},
		&v1.Frontend{}:        {1, 2, 3, 4},
		&v1.SessionAffinity{}: {1},
		&v1.TrafficPolicy{}:   {1, 2},
	}
	for m, want := range known {
		fs := m.ProtoReflect().Descriptor().Fields()
		var got []protowire.Number
		for i := range fs.Len() {
			got = append(got, fs.Get(i).Number())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s has fields %v, the fast decoder knows %v: teach decode.go the new ones",
				m.ProtoReflect().Descriptor().FullName(), got, want)
		}
	}
}

func randomText(r *rand.Rand) string {
	return []string{"", "a", "10.0.0.1", "2001:db8::1", "ns-é", "default/web:http"}[r.IntN(6)]
}

func randomEndpointSet(r *rand.Rand) *v1.EndpointSet {
	s := &v1.EndpointSet{Action: v1.TrafficAction(r.IntN(4)), LocalReadyEndpoints: r.Uint32() % 7}
	for range r.IntN(6) {
		s.Backends = append(s.Backends, &v1.Backend{Address: randomText(r), Port: r.Uint32() % 70000,
			Weight: r.Uint32() % 3, Terminating: r.IntN(2) == 0})
	}
	return s
}

func randomServicePort(r *rand.Rand) *v1.ServicePort {
	s := &v1.ServicePort{Namespace: randomText(r), Name: randomText(r), PortName: randomText(r),
		Family: v1.IPFamily(r.IntN(3)), Protocol: v1.Protocol(r.IntN(4)), Scheduler: randomText(r),
		HealthCheckNodePort: r.Uint32() % 40000}
	for range r.IntN(4) {
		f := &v1.Frontend{Kind: v1.FrontendKind(r.IntN(5)), Address: randomText(r), Port: r.Uint32() % 70000}
		for range r.IntN(3) {
			f.SourceRanges = append(f.SourceRanges, randomText(r))
		}
		s.Frontends = append(s.Frontends, f)
	}
	if r.IntN(2) == 0 {
		s.SessionAffinity = &v1.SessionAffinity{TimeoutSeconds: r.Uint32() % 10000}
	}
	if r.IntN(3) > 0 {
		s.Internal = &v1.TrafficPolicy{Scope: v1.EndpointScope(r.IntN(3)), Masquerade: r.IntN(2) == 0}
	}
	if r.IntN(3) > 0 {
		s.External = &v1.TrafficPolicy{Scope: v1.EndpointScope(r.IntN(3)), Masquerade: r.IntN(2) == 0}
	}
	return s
}

// sameAsProtobuf checks that decode reads b as protobuf does.
func sameAsProtobuf[M proto.Message](t *testing.T, b []byte, decode func([]byte) (M, error), fresh M) {
	t.Helper()
	got, err := decode(b)
	want := fresh
	werr := proto.Unmarshal(b, want)
	if (err != nil) != (werr != nil) {
		t.Fatalf("%x: error %v, protobuf's %v", b, err, werr)
	}
	if werr == nil && !proto.Equal(got, want) {
		t.Fatalf("%x: decoded\n%v\nprotobuf decodes\n%v", b, got, want)
	}
}

func TestFastDecodersReadWhatProtobufReads(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 3))
	for range 2000 {
		es, sp := randomEndpointSet(r), randomServicePort(r)
		eb, _ := proto.Marshal(es)
		sb, _ := proto.Marshal(sp)
		if _, ok := fastEndpointSet(eb); !ok {
			t.Fatalf("endpoint set %v fell back to protobuf", es)
		}
		if _, ok := fastServicePort(sb); !ok {
			t.Fatalf("service port %v fell back to protobuf", sp)
		}
		// Whatever the bytes, the result is protobuf's: unknown fields, repeated message fields,
		// truncation and bad UTF-8 included.
		for _, mut := range mutations(r, eb, sb) {
			sameAsProtobuf(t, mut, decodeEndpointSet, &v1.EndpointSet{})
			sameAsProtobuf(t, mut, decodeServicePort, &v1.ServicePort{})
		}
	}
}

// mutations returns variants of two encodings: each as it is, each with an unknown field,
// joined (message fields given twice), cut short, and with a byte changed.
func mutations(r *rand.Rand, a, b []byte) [][]byte {
	unknown := protowire.AppendTag(nil, 99, protowire.VarintType)
	unknown = protowire.AppendVarint(unknown, 7)
	out := [][]byte{a, b, append(slices.Clone(a), unknown...), append(slices.Clone(b), unknown...),
		append(slices.Clone(a), a...), append(slices.Clone(b), b...)}
	for _, x := range [][]byte{a, b} {
		if len(x) > 0 {
			out = append(out, x[:r.IntN(len(x))])
			y := slices.Clone(x)
			y[r.IntN(len(y))] = byte(r.IntN(256))
			out = append(out, y)
		}
	}
	return out
}

func FuzzFastDecoders(f *testing.F) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		b, _ := proto.Marshal(randomServicePort(r))
		f.Add(b)
		b, _ = proto.Marshal(randomEndpointSet(r))
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameAsProtobuf(t, b, decodeEndpointSet, &v1.EndpointSet{})
		sameAsProtobuf(t, b, decodeServicePort, &v1.ServicePort{})
	})
}
