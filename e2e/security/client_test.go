package security

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/internal/testpki"
)

// clientTLS is a client's TLS towards the brain built with the standard library alone, not with
// the project's own TLS code, so that the brain is checked against what any client does: the
// brain's certificate must chain to caFile and name the host dialed; id, unless nil, is
// presented as the client certificate.
func clientTLS(t *testing.T, caFile string, id *testpki.Pair) *tls.Config {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		t.Fatalf("%s: no certificate", caFile)
	}
	cfg := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}}
	if id != nil {
		pair, err := tls.LoadX509KeyPair(id.Cert, id.Key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg
}

// dial is a gRPC connection to addr over cfg, or in plaintext when cfg is nil. It connects on
// the first call.
func dial(t *testing.T, addr string, cfg *tls.Config) *grpc.ClientConn {
	t.Helper()
	creds := insecure.NewCredentials()
	if cfg != nil {
		creds = credentials.NewTLS(cfg)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// call runs one RPC with a bound that only guards against a hang, and returns its status code.
func call(fn func(ctx context.Context) error) (codes.Code, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err := fn(ctx)
	return status.Code(err), err
}

// handshake connects to addr with cfg and reads the brain's first bytes. It returns nil when the
// brain accepted the client and the error it ended the connection with otherwise. In TLS 1.3 a
// client finishes its side of the handshake before the server has judged its certificate, so a
// refusal arrives as the alert that fails the first read; an accepted client reads the server's
// HTTP/2 settings frame.
func handshake(addr string, cfg *tls.Config) error {
	d := &net.Dialer{Timeout: 10 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	// The client's HTTP/2 preface and an empty SETTINGS frame, so that the server has no reason
	// to wait for anything before it answers.
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")); err != nil {
		return err
	}
	buf := make([]byte, 9) // one HTTP/2 frame header
	if _, err := conn.Read(buf); err != nil {
		return err
	}
	if buf[3] != 0x4 { // SETTINGS
		return errors.New("the brain's first frame is not HTTP/2 SETTINGS")
	}
	return nil
}
