package baremetal

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestACorruptStoredObjectIsSkippedNotBlocking writes garbage where a service is stored, as a
// broken disk or a hand edit would: applies, diffs and gets of everything else go on, the object
// is counted as unreadable, and delete removes it.
func TestACorruptStoredObjectIsSkippedNotBlocking(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	if _, err := applyYAML(t, st, native("  ports: [{port: 80}]\n")); err != nil {
		t.Fatal(err)
	}
	// Through etcd directly: the store writes only what a commit validated.
	if _, err := st.Client().Put(ctx, "/ganglion/objects/Service/default/broken", "\x00not json{"); err != nil {
		t.Fatal(err)
	}
	other := strings.Replace(native("  ports: [{port: 8080}]\n"), "name: web", "name: other", 1)
	if _, err := applyYAML(t, st, other); err != nil {
		t.Fatalf("apply beside a corrupt object: %v", err)
	}
	a := &Admin{Store: st, Settings: DefaultSettings()}
	if _, err := a.Diff(ctx, &v1.DiffRequest{Documents: []*v1.Document{{Content: other}}}); err != nil {
		t.Fatalf("diff beside a corrupt object: %v", err)
	}
	got, err := a.Get(ctx, &v1.GetRequest{Selector: &v1.ObjectRef{Kind: "Service"}})
	if err != nil {
		t.Fatalf("get beside a corrupt object: %v", err)
	}
	var names []string
	for _, d := range got.Objects {
		names = append(names, d.Source)
	}
	if strings.Join(names, ",") != "Service/default/other,Service/default/web" {
		t.Errorf("get listed %v, want the readable services only", names)
	}
	if n := testutil.ToFloat64(st.Collectors()[0]); n == 0 {
		t.Error("ganglion_store_objects_unreadable_total did not count the corrupt object")
	}
	if _, err := a.Delete(ctx, &v1.DeleteRequest{Objects: []*v1.ObjectRef{{Kind: "svc", Name: "broken"}}}); err != nil {
		t.Fatalf("delete of the corrupt object: %v", err)
	}
	snap, err := st.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Items) != 2 {
		t.Errorf("after delete the store holds %d objects, want the 2 readable ones", len(snap.Items))
	}
}
