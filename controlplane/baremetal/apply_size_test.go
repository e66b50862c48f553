package baremetal

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// manyServices is a manifest of n native services with a backend each.
func manyServices(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "---\napiVersion: ganglion-proxy.io/v1\nkind: Service\nmetadata: {name: svc-%d, namespace: bulk}\n"+
			"spec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n  backends: [{address: 10.%d.%d.%d}]\n", i, 100+i>>16, i>>8&255, i&255)
	}
	return b.String()
}

// TestApplyTwiceIsANoOp applies the same documents twice: the second apply stores nothing and
// says so, as kubectl says "unchanged".
func TestApplyTwiceIsANoOp(t *testing.T) {
	ctx := context.Background()
	st := openStore(t)
	doc := base + manyServices(3)
	objs, err := Decode("twice.yaml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	first, err := Apply(ctx, st, objs, DefaultSettings(), false)
	if err != nil || len(first.Stored) != len(objs) || len(first.Unchanged) != 0 {
		t.Fatalf("first apply: %+v, %v", first, err)
	}
	snap, _ := st.Snapshot(ctx)
	objs, _ = Decode("twice.yaml", []byte(doc))
	second, err := Apply(ctx, st, objs, DefaultSettings(), false)
	if err != nil || len(second.Stored) != 0 || len(second.Unchanged) != len(objs) {
		t.Fatalf("second apply: %+v, %v; want every object unchanged", second, err)
	}
	if again, _ := st.Snapshot(ctx); again.Generation != snap.Generation {
		t.Errorf("the second apply wrote: generation %d -> %d", snap.Generation, again.Generation)
	}
}

// TestApplyOfTenThousandServicesIsOneTransaction applies 10,000 services at once on the embedded
// store: all of them are stored, with a VIP each, by one commit.
func TestApplyOfTenThousandServicesIsOneTransaction(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 10,000 services")
	}
	ctx := context.Background()
	st := openStore(t)
	objs, err := Decode("bulk.yaml", []byte(manyServices(10000)))
	if err != nil {
		t.Fatal(err)
	}
	before, _ := st.Snapshot(ctx)
	res, err := Apply(ctx, st, objs, DefaultSettings(), false)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := st.Snapshot(ctx)
	if len(res.Stored) != 10000 || len(after.Items) != 10000 || after.Generation == before.Generation {
		t.Fatalf("stored %d of 10000 (%d items); generation %d -> %d", len(res.Stored), len(after.Items), before.Generation, after.Generation)
	}
}
