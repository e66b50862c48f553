package security

import (
	"context"
	"crypto/tls"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestCertificatesRotateWithoutRestart starts a brain on certificate files, as cert-manager or an
// operator's tooling would hand it, rewrites them under the running processes and checks that
// new connections use what the files hold now.
func TestCertificatesRotateWithoutRestart(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.New(t)
	server := ca.Server()
	clientCA := filepath.Join(dir, "client-ca.crt")
	replaceFile(t, clientCA, ca.CAFile)
	brain := proc.StartBrain(t, testenv.FreeAddr(t), append(proc.EtcdArgs(t, dir),
		"--tls-cert", server.Cert, "--tls-key", server.Key, "--client-ca", clientCA)...)
	brain.WaitReady(t)

	t.Run("a new connection gets the rewritten serving certificate", func(t *testing.T) {
		first := servingSerial(t, brain.Addr, ca.CAFile)
		if want := serialOf(t, server.Cert); first.Cmp(want) != 0 {
			t.Fatalf("the brain serves serial %x, its file holds %x", first, want)
		}
		ca.Server() // same CA, same files, a new serial
		want := serialOf(t, server.Cert)
		if want.Cmp(first) == 0 {
			t.Fatal("the new certificate has the old serial")
		}
		proc.Eventually(t, "a new handshake presenting serial "+want.Text(16), func() bool {
			return servingSerial(t, brain.Addr, ca.CAFile).Cmp(want) == 0
		})
		if got, _ := proc.Metric(t, "http://"+brain.Metrics+"/metrics", expiryMetricName, fmt.Sprintf("file=%q", server.Cert)); got != notAfter(t, server.Cert) {
			t.Errorf("expiry metric of %s: %v, want the new certificate's %v", server.Cert, got, notAfter(t, server.Cert))
		}
	})

	t.Run("an agent reconnects with its rewritten certificate", func(t *testing.T) {
		// The agent moves to a new CA, and the brain stops trusting the old one: once its stream
		// is cut, the agent can only come back with the certificate now in its files.
		next := testpki.New(t)
		relay := startRelay(t, brain.Addr)
		id := ca.Issue(pki.RoleNode, "rotor")
		a := startAgent(t, relay.addr, ca.CAFile, "rotor", id)
		proc.Eventually(t, "the agent connected with its first certificate", a.synced)

		renewed := next.IssueValid(pki.RoleNode, "rotor", time.Now().Add(-time.Minute), time.Now().Add(48*time.Hour))
		// The key first, as pki.WritePair does: a reader that sees the new certificate with the
		// old key keeps the pair it has and reads again.
		replaceFile(t, id.Key, renewed.Key)
		replaceFile(t, id.Cert, renewed.Cert)
		replaceFile(t, clientCA, next.CAFile)
		old := ca.Issue(pki.RoleAdmin, "old-ops")
		if err := handshake(brain.Addr, clientTLS(t, ca.CAFile, &old)); err == nil {
			t.Fatal("the brain still accepts the old CA after its --client-ca file changed")
		}

		metrics := "http://" + brain.Metrics + "/metrics"
		snapshots, _ := proc.Metric(t, metrics, "ganglion_snapshots_total")
		dials := relay.connections()
		relay.cut()
		// A snapshot is sent only to a stream the brain has authorized, and it now trusts only
		// the new CA.
		proc.Eventually(t, "the agent re-authenticated and resumed", func() bool {
			n, _ := proc.Metric(t, metrics, "ganglion_snapshots_total")
			return n > snapshots && relay.connections() > dials && a.synced()
		})
		ops := next.Issue(pki.RoleAdmin, "ops")
		inspect := v1.NewInspectServiceClient(dial(t, brain.Addr, clientTLS(t, ca.CAFile, &ops)))
		proc.Eventually(t, "the brain lists rotor connected", func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := inspect.ListNodes(ctx, &v1.ListNodesRequest{})
			if err != nil {
				t.Fatalf("ListNodes as the new CA's admin: %v", err)
			}
			for _, n := range resp.Nodes {
				if n.Name == "rotor" && n.Connected {
					return true
				}
			}
			return false
		})
		if got, _ := proc.Metric(t, "http://"+a.metrics+"/metrics", expiryMetricName, fmt.Sprintf("file=%q", id.Cert)); got != notAfter(t, id.Cert) {
			t.Errorf("the agent's expiry metric of %s: %v, want the new certificate's %v", id.Cert, got, notAfter(t, id.Cert))
		}
	})
}

// servingSerial makes a new TLS connection to addr and returns the serial of the certificate
// the brain presents.
func servingSerial(t *testing.T, addr, caFile string) *big.Int {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, clientTLS(t, caFile, nil))
	if err != nil {
		t.Fatalf("TLS to the brain: %v", err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

// serialOf reads the serial of the certificate in file.
func serialOf(t *testing.T, file string) *big.Int {
	t.Helper()
	return parseCert(t, file).SerialNumber
}

// replaceFile puts a copy of src at dst through a rename, as tools that rotate certificates do,
// so that the process watching dst never reads half a file.
func replaceFile(t *testing.T, dst, src string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}
