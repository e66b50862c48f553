package compute

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// updateUpserts is the field number of Update.upserts: a node's full state goes out as one Update
// whose upserts are its resources' shared wire bytes, sorted by name (as the stream sends them).
var updateUpserts = (&v1.Update{}).ProtoReflect().Descriptor().Fields().ByName("upserts").Number()

// encodeState appends node's full state to buf as an encoded Update.
func encodeState(e *Engine, node string, buf []byte) (out []byte, resources int) {
	state := e.NodeState(node)
	for _, r := range state {
		buf = protowire.AppendTag(buf, updateUpserts, protowire.BytesType)
		buf = protowire.AppendBytes(buf, r.Wire)
	}
	return buf, len(state)
}

// BenchmarkComputeMaterialise assembles and encodes every node's full state at the envelope, as a
// brain does when every agent connects at once with nothing held: resolve the layers, sort by name,
// write one Update per node. The load is not timed (BenchmarkComputeLoad is that). The line is
// printed only once every node was seen to hold every shared resource, and a sample of nodes to
// hold their own and their zone's overrides in place of the defaults and to decode back to their
// state; the sample is checked after the clock stops, since the check costs a map lookup a resource.
func BenchmarkComputeMaterialise(b *testing.B) {
	env := newEnvelope()
	e := env.load()
	runtime.GC()
	var seconds float64
	var resources, bytes int
	var buf []byte
	for b.Loop() {
		resources, bytes = 0, 0
		start := time.Now()
		for _, n := range env.nodes {
			var count int
			buf, count = encodeState(e, n.Name, buf[:0])
			if count != e.StateSize() {
				b.Fatalf("node %s holds %d resources, want the %d every node holds", n.Name, count, e.StateSize())
			}
			resources += count
			bytes += len(buf)
		}
		seconds = time.Since(start).Seconds()
	}
	for i := 0; i < len(env.nodes); i += 25 {
		if err := checkMaterialised(e, env.nodes[i].Name); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Printf("BENCH compute materialise nodes=%d seconds=%.2f resources_per_node=%d bytes_per_node=%d rss_mib=%.0f\n",
		envNodes, seconds, resources/envNodes, bytes/envNodes, maxRSSMiB())
}

// checkMaterialised checks that node's encoded state decodes to its state, in order, and that
// exactly its own and its zone's overrides stand in place of the defaults.
func checkMaterialised(e *Engine, node string) error {
	buf, _ := encodeState(e, node, nil)
	var u v1.Update
	if err := proto.Unmarshal(buf, &u); err != nil {
		return fmt.Errorf("node %s: encoded state does not decode: %w", node, err)
	}
	state := e.NodeState(node)
	got := make([]string, len(u.Upserts))
	for i, r := range u.Upserts {
		got[i] = r.Name + "@" + r.Version
	}
	want := make([]string, len(state))
	own := 0
	for i, r := range state {
		want[i] = r.Name + "@" + r.Version
		if e.defaults[r.Name] != r {
			own++
		}
	}
	if !slices.Equal(got, want) {
		return fmt.Errorf("node %s: decoded %d resources, not the %d of its state", node, len(got), len(want))
	}
	if own != e.Overrides(node) || own == 0 {
		return fmt.Errorf("node %s: %d resources differ from the defaults, want its %d overrides", node, own, e.Overrides(node))
	}
	return nil
}
