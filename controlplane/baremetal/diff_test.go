package baremetal

import (
	"context"
	"log/slog"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// replayed is the engine a brain builds from everything stored now.
func replayed(t *testing.T, st *store.Store) *compute.Engine {
	t.Helper()
	all, err := st.ReadAll(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	e := compute.NewEngine(compute.Options{})
	newSourceState(slog.New(slog.DiscardHandler)).apply(e, all)
	return e
}

// everything names every resource of both engines for every node: a delta that makes DiffPorts
// compare the whole state instead of trusting the change's own delta.
func everything(a, b *compute.Engine) compute.Delta {
	var d compute.Delta
	for _, e := range []*compute.Engine{a, b} {
		for _, n := range e.Nodes() {
			for _, r := range e.NodeState(n) {
				d.Shared = append(d.Shared, r.Name)
			}
		}
	}
	return d
}

// TestDiffPredictsWhatTheApplyThenDoes diffs a change (a backend more for a stored service and a
// new service), checks that nothing was stored, applies it, and compares the prediction with the
// whole state before and after, as the agents receive it. Diffing it again then shows nothing.
func TestDiffPredictsWhatTheApplyThenDoes(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	if _, err := applyYAML(t, st, base); err != nil {
		t.Fatal(err)
	}
	change := `
apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: taken}
spec:
  type: NodePort
  vips: [10.0.0.10]
  ports: [{port: 80, nodePort: 30080}]
  backends: [{address: 10.1.0.1, node: n1}, {address: 10.1.0.2, node: n2}]
---
` + native("  vips: [10.0.0.11]\n  ports: [{port: 8080}]\n  backends: [{address: 10.1.0.3, node: n2}]\n")
	objs, err := Decode("change.yaml", []byte(change))
	if err != nil {
		t.Fatal(err)
	}
	before := replayed(t, st)
	snap, _ := st.Snapshot(ctx)
	predicted, err := Diff(ctx, st, objs, DefaultSettings(), compute.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if after, _ := st.Snapshot(ctx); after.Generation != snap.Generation {
		t.Fatalf("diff stored something: generation %d -> %d", snap.Generation, after.Generation)
	}
	if len(predicted) != 2 {
		t.Fatalf("want both nodes to change, got %v", predicted)
	}
	for _, n := range predicted {
		if len(n.Ports) != 2 {
			t.Errorf("node %s: want the changed and the new port, got %v", n.Node, n.Ports)
		}
	}
	if _, err := applyYAML(t, st, change); err != nil {
		t.Fatal(err)
	}
	after := replayed(t, st)
	actual := compute.DiffPorts(before, after, everything(before, after))
	if !proto.Equal(&v1.DiffResponse{Nodes: predicted}, &v1.DiffResponse{Nodes: actual}) {
		t.Errorf("predicted:\n%v\nwhat the apply did:\n%v", predicted, actual)
	}
	again, err := Diff(ctx, st, objs, DefaultSettings(), compute.Options{})
	if err != nil || len(again) != 0 {
		t.Errorf("diff of what is stored: %v, %v; want no difference", again, err)
	}
}
