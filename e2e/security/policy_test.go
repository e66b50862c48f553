package security

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// intruderYAML is a service someone without the right would like to store: traffic to it would
// go where they say.
const intruderYAML = `apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: intruder, namespace: default}
spec:
  ports: [{port: 80}]
  backends: [{address: 203.0.113.66}]
`

// clients are the generated clients of one identity's connection.
type clients struct {
	admin   v1.AdminServiceClient
	inspect v1.InspectServiceClient
}

// as connects over TLS presenting id, or no certificate when id is nil.
func (b *bareMetal) as(t *testing.T, id *testpki.Pair) clients {
	t.Helper()
	conn := dial(t, b.Addr, clientTLS(t, b.caFile, id))
	return clients{admin: v1.NewAdminServiceClient(conn), inspect: v1.NewInspectServiceClient(conn)}
}

func (c clients) apply(ctx context.Context) error {
	_, err := c.admin.Apply(ctx, &v1.ApplyRequest{Documents: []*v1.Document{{Source: "intruder.yaml", Content: intruderYAML}}})
	return err
}

func (c clients) get(ctx context.Context) error {
	_, err := c.admin.Get(ctx, &v1.GetRequest{})
	return err
}

func (c clients) listNodes(ctx context.Context) error {
	_, err := c.inspect.ListNodes(ctx, &v1.ListNodesRequest{})
	return err
}

// expect checks that each of calls ends with code.
func expect(t *testing.T, code codes.Code, calls map[string]func(context.Context) error) {
	t.Helper()
	for name, fn := range calls {
		if got, err := call(fn); got != code {
			t.Errorf("%s: %v, want %s", name, err, code)
		}
	}
}

// stored reports whether the brain holds the intruder's service, asked as its administrator.
func (b *bareMetal) stored(t *testing.T) bool {
	t.Helper()
	var resp *v1.GetResponse
	if _, err := call(func(ctx context.Context) (err error) {
		resp, err = b.as(t, b.admin()).admin.Get(ctx, &v1.GetRequest{Selector: &v1.ObjectRef{Kind: "service"}})
		return err
	}); err != nil {
		t.Fatalf("Get as admin: %v", err)
	}
	for _, o := range resp.Objects {
		if strings.Contains(o.Content, "intruder") {
			return true
		}
	}
	return false
}

// anonymousRefused: TLS without a client certificate proves nothing; the calls that read or
// write the cluster say so, and nothing is stored.
func anonymousRefused(t *testing.T, b *bareMetal) {
	anon := b.as(t, nil)
	expect(t, codes.Unauthenticated, map[string]func(context.Context) error{
		"Apply": anon.apply, "Get": anon.get, "InspectService/ListNodes": anon.listNodes,
	})
	if b.stored(t) {
		t.Error("an anonymous Apply stored its service")
	}
}

// anonymousGrpcurl: grpcurl without a certificate may check health, as a load balancer does,
// but may not list the brain's services through reflection.
func anonymousGrpcurl(t *testing.T, b *bareMetal) {
	anon := proc.GrpcurlTLS(b.caFile, nil)
	out, err := proc.Grpcurl(t, append(anon, b.Addr, "list")...)
	if err == nil || !strings.Contains(out, "Unauthenticated") {
		t.Errorf("anonymous grpcurl list: %v, want Unauthenticated:\n%s", err, out)
	}
	out, err = proc.Grpcurl(t, append(anon, "-protoset", proc.HealthProtoset(t), b.Addr, "grpc.health.v1.Health/Check")...)
	if err != nil || !strings.Contains(out, `"SERVING"`) {
		t.Errorf("anonymous health check: %v\n%s", err, out)
	}
}

// readerMayOnlyRead: a read-only identity reads the store and the inspect API, and writes
// nothing.
func readerMayOnlyRead(t *testing.T, b *bareMetal) {
	id := b.issue(t, pki.RoleReader, "auditor")
	reader := b.as(t, &id)
	expect(t, codes.PermissionDenied, map[string]func(context.Context) error{"Apply": reader.apply})
	expect(t, codes.OK, map[string]func(context.Context) error{"Get": reader.get, "InspectService/ListNodes": reader.listNodes})
	if b.stored(t) {
		t.Error("a reader's Apply stored its service")
	}
}

// nodeMayNotAdminister: a node's certificate is for its own stream only; a stolen node key
// neither changes nor reads the cluster.
func nodeMayNotAdminister(t *testing.T, b *bareMetal) {
	id := b.issue(t, pki.RoleNode, "edge-7")
	node := b.as(t, &id)
	expect(t, codes.PermissionDenied, map[string]func(context.Context) error{
		"Apply": node.apply, "Get": node.get, "InspectService/ListNodes": node.listNodes,
	})
	if b.stored(t) {
		t.Error("a node's Apply stored its service")
	}
}
