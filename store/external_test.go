package store

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// writeCert issues a certificate for 127.0.0.1 signed by ca (self-signed when ca is nil) and
// writes it and its key as PEM files; it returns the certificate and key for signing others.
func writeCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IsCA:         isCA, BasicConstraintsValid: true,
	}
	parent, signer := tmpl, key
	if ca != nil {
		parent, signer = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(file, typ string, b []byte) {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(name+".crt", "CERTIFICATE", der)
	write(name+".key", "EC PRIVATE KEY", kb)
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key
}

// TestExternalEtcdWithMutualTLS runs the store against a separate etcd server (Debian's
// etcd-server) that requires client certificates: the external-cluster path of bare-metal mode.
func TestExternalEtcdWithMutualTLS(t *testing.T) {
	etcd := testenv.RequireCommand(t, "etcd")
	dir := t.TempDir()
	ca, caKey := writeCert(t, dir, "ca", nil, nil, true)
	writeCert(t, dir, "server", ca, caKey, false)
	writeCert(t, dir, "client", ca, caKey, false)
	client, peer := freePort(t), freePort(t)
	clientTLS := "https" + client[len("http"):]
	cmd := exec.Command(etcd, "--name", "ext", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", clientTLS, "--advertise-client-urls", clientTLS,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", "ext="+peer,
		"--cert-file", filepath.Join(dir, "server.crt"), "--key-file", filepath.Join(dir, "server.key"),
		"--trusted-ca-file", filepath.Join(dir, "ca.crt"), "--client-cert-auth")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	ctx := context.Background()
	// Without a client certificate the cluster refuses us.
	short, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if s, err := Open(short, Config{Endpoints: []string{clientTLS}, CAFile: filepath.Join(dir, "ca.crt"), Log: slog.New(slog.DiscardHandler)}); err == nil {
		s.Close()
		t.Fatal("opened an etcd that requires client certificates without one")
	}
	s, err := Open(ctx, Config{Endpoints: []string{clientTLS}, CertFile: filepath.Join(dir, "client.crt"),
		KeyFile: filepath.Join(dir, "client.key"), CAFile: filepath.Join(dir, "ca.crt"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Commit(ctx, 0, []Item{svcItem("a", "1")}, nil); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot(ctx)
	if err != nil || len(snap.Items) != 1 || string(snap.Items[0].Value) != "1" {
		t.Fatalf("snapshot %+v, %v", snap, err)
	}

	// This cluster keeps etcd's default limits, far below the embedded store's: a change over them
	// is refused whole, with an error that names the limit and how to raise it.
	var many []Item
	for i := range 200 {
		many = append(many, svcItem(fmt.Sprint("many-", i), "x"))
	}
	big := []Item{svcItem("big", strings.Repeat("x", 2<<20))}
	for _, c := range []struct {
		puts []Item
		want string
	}{{many, "--max-txn-ops"}, {big, "--max-request-bytes"}} {
		_, err := s.Commit(ctx, snap.Generation, c.puts, nil)
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("commit over the cluster's limit: %v; want ErrTooLarge naming %s", err, c.want)
		}
	}
	if after, err := s.Snapshot(ctx); err != nil || len(after.Items) != 1 {
		t.Errorf("a refused change was partly stored: %d items, %v", len(after.Items), err)
	}
}
