package stream

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// benchUpserts is an update of n endpoint sets of 10 backends each, as compute seals them.
func benchUpserts(n int) []*compute.Resource {
	out := make([]*compute.Resource, n)
	for i := range out {
		es := &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_FORWARD}
		for j := range 10 {
			es.Backends = append(es.Backends, &v1.Backend{Address: fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j), Port: 8080, Weight: 1})
		}
		msg := &v1.Resource{Name: fmt.Sprintf("ns/svc-%d:http/v4/cluster", i), Version: "0123456789abcdef", Content: &v1.Resource_Endpoints{Endpoints: es}}
		wire, _ := proto.Marshal(msg)
		out[i] = &compute.Resource{Name: msg.Name, Version: msg.Version, Msg: msg, Wire: wire}
	}
	return out
}

// BenchmarkUpdateFrame compares what one agent's update costs the brain: the spliced frame
// (updateFrame) against the library doing it (proto.Marshal of the StreamResponse, which
// re-encodes every resource for every agent). Run:
//
//	go test -run '^$' -bench BenchmarkUpdateFrame -benchmem ./controlplane/stream
func BenchmarkUpdateFrame(b *testing.B) {
	for _, n := range []int{1, 100} {
		ups := benchUpserts(n)
		b.Run(fmt.Sprintf("splice/%d", n), func(b *testing.B) {
			for b.Loop() {
				_ = updateFrame(9, ups, []string{"ns/gone/v4/cluster"}, false, 12)
			}
		})
		msgs := make([]*v1.Resource, n)
		for i, r := range ups {
			msgs[i] = r.Msg
		}
		b.Run(fmt.Sprintf("proto.Marshal/%d", n), func(b *testing.B) {
			for b.Loop() {
				_, _ = proto.Marshal(&v1.StreamResponse{Message: &v1.StreamResponse_Update{Update: &v1.Update{
					Generation: 9, Upserts: msgs, Removals: []string{"ns/gone/v4/cluster"}, SourceRevision: 12}}})
			}
		})
	}
}
