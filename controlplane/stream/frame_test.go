package stream

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestFramesDecodeAsTheContract checks that the spliced frames are exactly what agent.proto says.
func TestFramesDecodeAsTheContract(t *testing.T) {
	res := &compute.Resource{Name: "ns/a/v4/service", Version: "abc", Msg: &v1.Resource{Name: "ns/a/v4/service", Version: "abc",
		Content: &v1.Resource_Service{Service: &v1.ServicePort{Namespace: "ns", Name: "a"}}}}
	res.Wire, _ = proto.Marshal(res.Msg)

	f := updateFrame(7, []*compute.Resource{res}, []string{"ns/b/v4/cluster"}, true, 42)
	var got v1.StreamResponse
	if err := proto.Unmarshal(f.b, &got); err != nil {
		t.Fatal(err)
	}
	want := &v1.StreamResponse{Message: &v1.StreamResponse_Update{Update: &v1.Update{
		Generation: 7, Upserts: []*v1.Resource{res.Msg}, Removals: []string{"ns/b/v4/cluster"}, SnapshotComplete: true, SourceRevision: 42,
	}}}
	if !proto.Equal(&got, want) {
		t.Errorf("update frame decodes to %v, want %v", &got, want)
	}

	var hr v1.StreamResponse
	if err := proto.Unmarshal(heldRequestFrame([]uint32{3, 300}).b, &hr); err != nil {
		t.Fatal(err)
	}
	if b := hr.GetHeldRequest().GetBuckets(); len(b) != 2 || b[0] != 3 || b[1] != 300 {
		t.Errorf("held request decodes to %v", &hr)
	}
}
