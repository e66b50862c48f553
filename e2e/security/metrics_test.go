package security

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

const (
	expiryMetricName  = "ganglion_certificate_expiry_timestamp_seconds"
	refusalMetricName = "ganglion_auth_refusals_total"
)

// parseCert reads the (first) certificate in the PEM file, with the project's own reader.
func parseCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	p, err := pki.LoadPool(file)
	if err != nil {
		t.Fatal(err)
	}
	return p.Certificates()[0]
}

// notAfter is when the certificate in file stops being valid, in Unix seconds.
func notAfter(t *testing.T, file string) float64 {
	t.Helper()
	return float64(parseCert(t, file).NotAfter.Unix())
}

// expiryMetric: the brain exports when its serving certificate and its client CA stop being
// valid, by file, for an alert before they do.
func expiryMetric(t *testing.T, b *bareMetal) {
	url := "http://" + b.Metrics + "/metrics"
	for _, f := range []string{filepath.Join(b.pkiDir, pki.ServerBase+".crt"), b.caFile} {
		got, ok := proc.Metric(t, url, expiryMetricName, fmt.Sprintf("file=%q", f))
		if want := notAfter(t, f); !ok || got != want {
			t.Errorf("%s{file=%q} = %v (present %v), want %v", expiryMetricName, f, got, ok, want)
		}
	}
}

// refusalsCounted: each kind of refusal adds to the brain's counter, by method and reason.
func refusalsCounted(t *testing.T, b *bareMetal) {
	url := "http://" + b.Metrics + "/metrics"
	reader := b.issue(t, pki.RoleReader, "counted-reader")
	nodeA := b.issue(t, pki.RoleNode, "counted-node")
	for _, c := range []struct {
		method, reason string
		refuse         func(context.Context) error
	}{
		{"/ganglion.v1.AdminService/Apply", "unauthenticated", b.as(t, nil).apply},
		{"/ganglion.v1.AdminService/Apply", "forbidden", b.as(t, &reader).apply},
		{"/ganglion.v1.AgentService/Stream", "node_mismatch", func(ctx context.Context) error {
			s, err := v1.NewAgentServiceClient(dial(t, b.Addr, clientTLS(t, b.caFile, &nodeA))).Stream(ctx)
			if err != nil {
				return err
			}
			if err := s.Send(&v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: &v1.Hello{NodeName: "someone-else"}}}); err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}},
	} {
		labels := []string{fmt.Sprintf("method=%q", c.method), fmt.Sprintf("reason=%q", c.reason)}
		before, _ := proc.Metric(t, url, refusalMetricName, labels...)
		if code, err := call(c.refuse); code == codes.OK {
			t.Fatalf("%s (%s) was not refused: %v", c.method, c.reason, err)
		}
		// The counter is raised before the refusal is sent, so it shows at once.
		if after, _ := proc.Metric(t, url, refusalMetricName, labels...); after < before+1 {
			t.Errorf("%s%v: %v before the refusal, %v after", refusalMetricName, labels, before, after)
		}
	}
}
