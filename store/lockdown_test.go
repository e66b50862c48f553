package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// intruderTLS is what a local user could bring: no certificate (no files), or one they made
// or read, presented whatever CAs the server asks for.
func intruderTLS(t *testing.T, certFile, keyFile string) *tls.Config {
	t.Helper()
	cfg := &tls.Config{InsecureSkipVerify: true} // the intruder does not care who answers
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		// Certificates alone would be withheld from a server that names other CAs.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil }
	}
	return cfg
}

// refusedByEtcd asserts that an etcd client at endpoint can neither write nor read: the calls
// wait for a connection that never becomes ready, and nothing reaches the store.
func refusedByEtcd(t *testing.T, s *Store, endpoint string, tlsCfg *tls.Config) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, TLS: tlsCfg, DialTimeout: time.Second, Logger: zap.NewNop()})
	if err != nil {
		return // refused at the dial: as good
	}
	defer cli.Close()
	for name, op := range map[string]clientv3.Op{
		"put": clientv3.OpPut(s.prefix+"objects/Service/default/intruder", "evil"),
		"get": clientv3.OpGet(s.prefix, clientv3.WithPrefix()),
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Do(ctx, op)
		cancel()
		if !errors.Is(err, context.DeadlineExceeded) && status.Code(err) != codes.Unavailable {
			t.Errorf("%s through %s (tls=%v): %v, want it refused", name, endpoint, tlsCfg != nil, err)
		}
	}
}

// refusedOverHTTP asserts that an HTTP request to url gets no answer from etcd, and why.
func refusedOverHTTP(t *testing.T, method, url string, tlsCfg *tls.Config, why string) {
	t.Helper()
	c := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsCfg}}
	req, err := http.NewRequest(method, url, strings.NewReader(`{"key":"L2dhbmdsaW9uL29iamVjdHMvU2VydmljZS9kZWZhdWx0L2V2aWw=","value":"ZXZpbA=="}`))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err == nil {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Errorf("%s %s answered %d %q, want no answer", method, url, resp.StatusCode, body)
		return
	}
	if !strings.Contains(err.Error(), why) {
		t.Errorf("%s %s: %v, want %q", method, url, err, why)
	}
}

// TestEmbeddedEtcdAdmitsOnlyTheBrain: the embedded etcd's client and peer ports refuse a local
// user with a plain client, with TLS and no certificate, with a certificate of their own, and
// with the listeners' own pair read from the data directory, for reads and writes alike; the
// brain's store, in process, still works.
func TestEmbeddedEtcdAdmitsOnlyTheBrain(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	defer s.Close()
	ctx := context.Background()
	if _, err := s.Commit(ctx, 0, []Item{svcItem("a", "1")}, nil); err != nil {
		t.Fatal(err)
	}
	client, peer := s.etcd.Clients[0].Addr().String(), s.etcd.Peers[0].Addr().String()
	own := t.TempDir()
	writeCert(t, own, "intruder", nil, nil, true)
	intruders := []struct {
		tls *tls.Config
		why string
	}{
		{intruderTLS(t, "", ""), "certificate required"},
		{intruderTLS(t, filepath.Join(own, "intruder.crt"), filepath.Join(own, "intruder.key")), "unknown certificate authority"},
		{intruderTLS(t, filepath.Join(dir, lockedDir, "server.crt"), filepath.Join(dir, lockedDir, "server.key")), "unknown certificate authority"},
	}

	refusedByEtcd(t, s, "http://"+client, nil)
	for _, in := range intruders {
		refusedByEtcd(t, s, "https://"+client, in.tls)
	}
	for _, addr := range []string{client, peer} {
		for _, path := range []string{"/v3/kv/put", "/v3/kv/range", "/health", "/members", "/raft"} {
			refusedOverHTTP(t, "POST", "http://"+addr+path, nil, "EOF") // plaintext: hung up on
			for _, in := range intruders {
				refusedOverHTTP(t, "POST", "https://"+addr+path, in.tls, in.why)
			}
		}
	}

	snap, err := s.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Items) != 1 || snap.Items[0].Name != "a" {
		t.Errorf("store holds %+v, want only a", snap.Items)
	}
	if resp, err := s.Client().Get(ctx, s.prefix+"objects/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 1 {
		t.Errorf("objects in etcd: %v, %v; want only a", resp, err)
	}
}

// TestListenerCAKeyIsNowhere: the listeners' client CA leaves no key behind, so no one who
// reads the data directory can make a client certificate; the server key is private.
func TestListenerCAKeyIsNowhere(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir)
	defer s.Close()
	tlsDir := filepath.Join(dir, lockedDir)
	fi, err := os.Stat(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s mode %v, want 0700", tlsDir, fi.Mode().Perm())
	}
	entries, err := os.ReadDir(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != "server.crt server.key unheld-ca.crt" {
		t.Errorf("listener TLS files %v, want the server's pair and the CA certificate only", names)
	}
	ca := readCert(t, filepath.Join(tlsDir, "unheld-ca.crt"))
	pair, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "server.crt"), filepath.Join(tlsDir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if pair.PrivateKey.(*ecdsa.PrivateKey).PublicKey.Equal(ca.PublicKey) {
		t.Error("the server key is the client CA's key: whoever reads it could sign client certificates")
	}
	if pair.Leaf.CheckSignatureFrom(ca) == nil {
		t.Error("the server certificate chains to the client CA: whoever reads its key has a client certificate")
	}
}

// readCert parses the PEM certificate in file.
func readCert(t *testing.T, file string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("%s: no PEM", file)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// plainAuth is the credentials of a caller the brain served without TLS (--insecure).
type plainAuth struct{}

func (plainAuth) AuthType() string { return "insecure" }

// TestCallersGRPCPeerStaysOutOfEtcd: the store's callers pass contexts of the brain's own gRPC
// calls (an agent's stream, an admin's Apply). The in-process etcd must not take the peer in
// them for its own client: writes, leases and reads work whatever credentials it carries.
func TestCallersGRPCPeerStaysOutOfEtcd(t *testing.T) {
	s := openEmbedded(t, t.TempDir())
	defer s.Close()
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, AuthInfo: plainAuth{}})
	if _, err := s.Commit(ctx, 0, []Item{svcItem("a", "1")}, nil); err != nil {
		t.Fatal(err)
	}
	l, err := s.GrantLease(ctx, "leases/n1", []byte("{}"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Put(ctx, "health/default/a/n1/10.0.0.1", []byte("fail")); err != nil {
		t.Fatal(err)
	}
	if snap, err := s.Snapshot(ctx); err != nil || len(snap.Items) != 1 {
		t.Fatalf("snapshot %+v, %v", snap, err)
	}
}
