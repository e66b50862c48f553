package baremetal_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// bigService is a Kubernetes Service carrying an annotation of n bytes.
func bigService(name string, n int) string {
	return fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata:\n  name: %s\n  annotations: {note: %s}\nspec:\n  ports: [{port: 80}]\n",
		name, strings.Repeat("x", n))
}

// TestAFullStoreRefusesAppliesWithTheWayOut fills a store with a quota of 8 MiB through the
// admin API until an apply is refused: ResourceExhausted, naming the quota and the way out.
// Deleting through the admin API makes room, and the next apply goes in.
func TestAFullStoreRefusesAppliesWithTheWayOut(t *testing.T) {
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir(), ClientURL: freeURL(t), PeerURL: freeURL(t),
		Log: quiet, EtcdLogLevel: "panic", QuotaBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := &baremetal.Admin{Store: st, Settings: baremetal.DefaultSettings()}
	ctx := context.Background()
	var applied []*v1.ObjectRef
	for i := 0; ; i++ {
		if i == 100 {
			t.Fatal("100 services of 200 KiB went into a store of 8 MiB")
		}
		name := fmt.Sprint("big-", i)
		_, err = a.Apply(ctx, &v1.ApplyRequest{Documents: []*v1.Document{{Content: bigService(name, 200<<10)}}})
		if err != nil {
			break
		}
		applied = append(applied, &v1.ObjectRef{Kind: "svc", Namespace: "default", Name: name})
	}
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "8.0 MiB quota") || !strings.Contains(err.Error(), "--etcd-quota-bytes") {
		t.Fatalf("apply to a full store: %v; want ResourceExhausted naming the quota and --etcd-quota-bytes", err)
	}
	if _, err := a.Delete(ctx, &v1.DeleteRequest{Objects: applied[:len(applied)-1]}); err != nil {
		t.Fatalf("delete on a full store: %v", err)
	}
	if _, err := a.Apply(ctx, &v1.ApplyRequest{Documents: []*v1.Document{{Content: bigService("after", 200<<10)}}}); err != nil {
		t.Fatalf("apply after deleting: %v", err)
	}
}
