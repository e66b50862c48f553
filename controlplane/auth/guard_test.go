package auth_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/internal/grpcopts"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// tokens vouches for two fixed tokens, as a TokenReview would.
type tokens map[string]auth.Identity

func (t tokens) AuthenticateToken(_ context.Context, tok string) (auth.Identity, error) {
	if id, ok := t[tok]; ok {
		return id, nil
	}
	return auth.Identity{}, errors.New("token not valid")
}

type world struct {
	p     *testpki.PKI
	addr  string
	brain *brain.Brain
}

// start runs a synced brain behind TLS with the admin service registered (unimplemented: a call
// that passes the guard answers Unimplemented, one refused answers before it).
func start(t *testing.T) *world {
	p := testpki.New(t)
	srv := p.Server()
	pair, err := pki.LoadKeyPair(srv.Cert, srv.Key)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := pki.LoadPool(p.CAFile)
	b, err := brain.New(brain.Options{Log: quiet, Auth: auth.Config{TLS: pki.ServerConfig(pair, pool),
		Tokens: tokens{"node-b-token": {Role: pki.RoleNode, Name: "node-b", Via: "token"}}}})
	if err != nil {
		t.Fatal(err)
	}
	v1.RegisterAdminServiceServer(b.GRPC(), v1.UnimplementedAdminServiceServer{})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go b.Serve(lis)
	t.Cleanup(b.Stop)
	b.MarkSynced()
	return &world{p: p, addr: lis.Addr().String(), brain: b}
}

// conn dials as role:name ("" for no certificate).
func (w *world) conn(t *testing.T, role pki.Role, name string) *grpc.ClientConn {
	var pair *pki.KeyPair
	if role != "" {
		c := w.p.Issue(role, name)
		pair, _ = pki.LoadKeyPair(c.Cert, c.Key)
	}
	pool, _ := pki.LoadPool(w.p.CAFile)
	cc, err := grpc.NewClient(w.addr, grpc.WithTransportCredentials(pki.Credentials(pair, pool, "")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func TestPolicyPerIdentity(t *testing.T) {
	w := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type call func(*grpc.ClientConn) error
	apply := func(cc *grpc.ClientConn) error {
		_, err := v1.NewAdminServiceClient(cc).Apply(ctx, &v1.ApplyRequest{})
		return err
	}
	get := func(cc *grpc.ClientConn) error {
		_, err := v1.NewAdminServiceClient(cc).Get(ctx, &v1.GetRequest{})
		return err
	}
	inspect := func(cc *grpc.ClientConn) error {
		_, err := v1.NewInspectServiceClient(cc).ListNodes(ctx, &v1.ListNodesRequest{})
		return err
	}
	diff := func(cc *grpc.ClientConn) error {
		_, err := v1.NewAdminServiceClient(cc).Diff(ctx, &v1.DiffRequest{})
		return err
	}
	health := func(cc *grpc.ClientConn) error {
		_, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
		return err
	}
	cases := []struct {
		role pki.Role
		call string
		fn   call
		want codes.Code // Unimplemented: admitted to the (stub) admin service
	}{
		{"", "health", health, codes.OK},
		{"", "apply", apply, codes.Unauthenticated},
		{"", "get", get, codes.Unauthenticated},
		{"", "inspect", inspect, codes.Unauthenticated},
		{"", "diff", diff, codes.Unauthenticated},
		{pki.RoleAdmin, "diff", diff, codes.Unimplemented},
		{pki.RoleReader, "diff", diff, codes.Unimplemented},
		{pki.RoleNode, "diff", diff, codes.PermissionDenied},
		{pki.RoleAdmin, "apply", apply, codes.Unimplemented},
		{pki.RoleAdmin, "inspect", inspect, codes.OK},
		{pki.RoleReader, "apply", apply, codes.PermissionDenied},
		{pki.RoleReader, "get", get, codes.Unimplemented},
		{pki.RoleReader, "inspect", inspect, codes.OK},
		{pki.RoleNode, "apply", apply, codes.PermissionDenied},
		{pki.RoleNode, "get", get, codes.PermissionDenied},
		{pki.RoleNode, "inspect", inspect, codes.PermissionDenied},
		// A serving certificate is not a client certificate (no clientAuth usage): no handshake.
		{pki.RoleServer, "get", get, codes.Unavailable},
	}
	for _, c := range cases {
		if got := status.Code(c.fn(w.conn(t, c.role, "someone"))); got != c.want {
			t.Errorf("%q %s: %v, want %v", c.role, c.call, got, c.want)
		}
	}
	if got := refusals(t, w.brain.Registry, "/ganglion.v1.AdminService/Apply", "forbidden"); got != 2 {
		t.Errorf("forbidden Apply counted %v times, want 2 (reader, node)", got)
	}
}

// refusals reads ganglion_auth_refusals_total{method, reason}.
func refusals(t *testing.T, reg *prometheus.Registry, method, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "ganglion_auth_refusals_total" {
			continue
		}
		for _, m := range mf.Metric {
			labels := map[string]string{}
			for _, l := range m.Label {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["method"] == method && labels["reason"] == reason {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// openStream says hello as node over cc and returns the first error the brain answers.
func openStream(ctx context.Context, cc *grpc.ClientConn, node string) error {
	s, err := v1.NewAgentServiceClient(cc).Stream(ctx)
	if err != nil {
		return err
	}
	if err := s.Send(&v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: &v1.Hello{NodeName: node}}}); err != nil {
		return err
	}
	_, err = s.Recv()
	return err
}

func TestNodeMayOpenOnlyItsOwnStream(t *testing.T) {
	w := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := w.conn(t, pki.RoleNode, "node-a")
	if err := openStream(ctx, a, "node-b"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node-a asking for node-b's stream: %v, want PermissionDenied", err)
	}
	// Its own stream is served: the empty state arrives as an update, not an error.
	if err := openStream(ctx, a, "node-a"); err != nil {
		t.Errorf("node-a's own stream: %v", err)
	}
	for _, role := range []pki.Role{pki.RoleAdmin, pki.RoleReader, ""} {
		if err := openStream(ctx, w.conn(t, role, "node-a"), "node-a"); status.Code(err) == codes.OK {
			t.Errorf("%q opened a node stream", role)
		}
	}
	if got := refusals(t, w.brain.Registry, "/ganglion.v1.AgentService/Stream", "node_mismatch"); got != 1 {
		t.Errorf("node mismatch counted %v times, want 1", got)
	}
}

func TestTokensIdentifyNodesOnlyOverTLS(t *testing.T) {
	w := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc := w.conn(t, "", "")
	with := func(tok string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
	}
	if err := openStream(with("node-b-token"), cc, "node-b"); err != nil {
		t.Errorf("node-b's token on its own stream: %v", err)
	}
	if err := openStream(with("node-b-token"), cc, "node-a"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node-b's token on node-a's stream: %v, want PermissionDenied", err)
	}
	if err := openStream(with("forged"), cc, "node-b"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("forged token: %v, want Unauthenticated", err)
	}
	if _, err := v1.NewAdminServiceClient(cc).Get(with("node-b-token"), &v1.GetRequest{}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("node token on Get: %v, want PermissionDenied", err)
	}
}

func TestInsecureNeedsSaying(t *testing.T) {
	if _, err := brain.New(brain.Options{Log: quiet}); err == nil {
		t.Error("a brain without TLS and without Insecure was built")
	}
}

// TestAnonymousMessagesAreNotRead checks that a call an anonymous peer may not make is refused
// before its message is read: a request over the brain's maximum message size is answered
// Unauthenticated, not ResourceExhausted (which would mean the brain read it first).
func TestAnonymousMessagesAreNotRead(t *testing.T) {
	w := start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	big := &v1.ApplyRequest{Documents: []*v1.Document{{Content: strings.Repeat("x", grpcopts.MaxMessage+1)}}}
	_, err := v1.NewAdminServiceClient(w.conn(t, "", "")).Apply(ctx, big, grpc.MaxCallSendMsgSize(grpcopts.MaxMessage+1<<10))
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("anonymous oversized Apply: %v, want Unauthenticated before reading", err)
	}
	// An authenticated caller's oversized message is read and refused for its size.
	_, err = v1.NewAdminServiceClient(w.conn(t, pki.RoleAdmin, "a")).Apply(ctx, big, grpc.MaxCallSendMsgSize(grpcopts.MaxMessage+1<<10))
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("admin oversized Apply: %v, want ResourceExhausted", err)
	}
}
