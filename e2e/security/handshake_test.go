package security

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// plaintextRefused: a plaintext client, the only kind there was before TLS, reaches nothing.
func plaintextRefused(t *testing.T, b *bareMetal) {
	admin := v1.NewAdminServiceClient(dial(t, b.Addr, nil))
	if code, err := call(func(ctx context.Context) error { _, err := admin.Get(ctx, &v1.GetRequest{}); return err }); code != codes.Unavailable {
		t.Errorf("plaintext Get: %v, want the connection to fail (Unavailable)", err)
	}
	if code, err := call(func(ctx context.Context) error {
		_, err := admin.Apply(ctx, &v1.ApplyRequest{Documents: []*v1.Document{{Source: "intruder", Content: intruderYAML}}})
		return err
	}); code != codes.Unavailable {
		t.Errorf("plaintext Apply: %v, want the connection to fail (Unavailable)", err)
	}
	if out, err := proc.Grpcurl(t, "-plaintext", b.Addr, "list"); err == nil {
		t.Errorf("grpcurl -plaintext list answered:\n%s", out)
	}
}

// foreignCARefused: an administrator's certificate from another Ganglion CA is no certificate
// here. The brain's own local admin credential, presented the same way, is the control.
func foreignCARefused(t *testing.T, b *bareMetal) {
	if err := handshake(b.Addr, clientTLS(t, b.caFile, b.admin())); err != nil {
		t.Fatalf("the brain's own admin credential: %v", err)
	}
	other := testpki.New(t).Issue(pki.RoleAdmin, "mallory")
	refusedAtHandshake(t, b, other, "unknown certificate authority")
}

// expiredRefused: a certificate from the brain's CA whose time is over.
func expiredRefused(t *testing.T, b *bareMetal) {
	id := b.forge(t, pki.RoleAdmin, "expired-admin", time.Now().Add(-48*time.Hour), time.Now().Add(-24*time.Hour))
	refusedAtHandshake(t, b, id, "expired certificate")
}

// notYetValidRefused: a certificate from the brain's CA whose time has not come.
func notYetValidRefused(t *testing.T, b *bareMetal) {
	id := b.forge(t, pki.RoleAdmin, "future-admin", time.Now().Add(24*time.Hour), time.Now().Add(48*time.Hour))
	refusedAtHandshake(t, b, id, "expired certificate") // TLS has one alert for both ends of the validity
}

// refusedAtHandshake checks that the brain ends the handshake of a client presenting id with
// the TLS alert alert, and that a gRPC call made with it reaches no method.
func refusedAtHandshake(t *testing.T, b *bareMetal, id testpki.Pair, alert string) {
	t.Helper()
	err := handshake(b.Addr, clientTLS(t, b.caFile, &id))
	if err == nil || !strings.Contains(err.Error(), "remote error: tls: "+alert) {
		t.Errorf("handshake: %v, want the brain's alert %q", err, alert)
	}
	admin := v1.NewAdminServiceClient(dial(t, b.Addr, clientTLS(t, b.caFile, &id)))
	if code, err := call(func(ctx context.Context) error { _, err := admin.Get(ctx, &v1.GetRequest{}); return err }); code != codes.Unavailable {
		t.Errorf("Get: %v, want the connection to fail (Unavailable)", err)
	}
}
