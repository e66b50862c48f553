package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func newCA(t *testing.T) (*CA, string) {
	t.Helper()
	dir := t.TempDir()
	ca, created, err := EnsureCA(dir, 0)
	if err != nil || !created {
		t.Fatalf("EnsureCA: %v created=%v", err, created)
	}
	return ca, dir
}

func issue(t *testing.T, ca *CA, dir string, req Request) (string, string) {
	t.Helper()
	cert, key, err := ca.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	base := string(req.Role) + "-" + req.Name
	if err := WritePair(dir, base, cert, key); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
}

func TestIdentityRoundTrip(t *testing.T) {
	ca, dir := newCA(t)
	for _, role := range []Role{RoleNode, RoleAdmin, RoleReader, RoleServer} {
		certFile, keyFile := issue(t, ca, dir, Request{Role: role, Name: "edge-1.rack-a"})
		pair, err := LoadKeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		gotRole, gotName, err := IdentityOf(pair.Leaf())
		if err != nil || gotRole != role || gotName != "edge-1.rack-a" {
			t.Errorf("%s: IdentityOf = %q %q %v", role, gotRole, gotName, err)
		}
	}
}

func TestIdentityOfRefusesAmbiguousOrForeignCertificates(t *testing.T) {
	u := func(s string) *x509.Certificate {
		c := &x509.Certificate{}
		for _, p := range strings.Fields(s) {
			parsed, err := url.Parse("ganglion://" + p)
			if err != nil {
				t.Fatal(err)
			}
			c.URIs = append(c.URIs, parsed)
		}
		return c
	}
	cases := map[string]struct {
		cert *x509.Certificate
		want string
	}{
		"none":           {&x509.Certificate{}, "no ganglion:// identity"},
		"two identities": {u("node/a admin/b"), "more than one"},
		"unknown role":   {u("root/a"), `role "root"`},
		"bad name":       {u("node/A_B"), "only lowercase"},
		"empty name":     {u("node/"), "1 to 253"},
		"path in name":   {u("node/a/../b"), "only lowercase"},
	}
	for name, c := range cases {
		if _, _, err := IdentityOf(c.cert); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", name, err, c.want)
		}
	}
	if _, _, err := IdentityOf(&x509.Certificate{}); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("no identity: %v is not ErrNoIdentity", err)
	}
}

func TestIssueRefusesBadRequests(t *testing.T) {
	ca, _ := newCA(t)
	if _, _, err := ca.Issue(Request{Role: "root", Name: "a"}); err == nil {
		t.Error("unknown role issued")
	}
	if _, _, err := ca.Issue(Request{Role: RoleNode, Name: "Not/Valid"}); err == nil {
		t.Error("bad name issued")
	}
}

// handshake runs one TLS handshake over a pipe and returns both sides' errors and what the
// server saw.
func handshake(t *testing.T, server, client *tls.Config) (serverErr, clientErr error, state tls.ConnectionState) {
	t.Helper()
	a, b := net.Pipe()
	done := make(chan error, 1)
	srv := tls.Server(a, server)
	go func() { done <- srv.Handshake(); a.Close() }()
	cli := tls.Client(b, client)
	clientErr = cli.Handshake()
	b.Close()
	serverErr = <-done
	return serverErr, clientErr, srv.ConnectionState()
}

func TestHandshakeVerifiesBothSides(t *testing.T) {
	ca, dir := newCA(t)
	other, otherDir := newCA(t)
	srvCert, srvKey := issue(t, ca, dir, Request{Role: RoleServer, Name: "brain", DNSNames: []string{"brain.example"}})
	pair, _ := LoadKeyPair(srvCert, srvKey)
	pool, _ := LoadPool(filepath.Join(dir, CACert))
	otherPool, _ := LoadPool(filepath.Join(otherDir, CACert))
	server := ServerConfig(pair, pool)
	client := func(req *Request, fromOther bool, roots *Pool, name string) *tls.Config {
		var kp *KeyPair
		if req != nil {
			c := ca
			d := dir
			if fromOther {
				c, d = other, otherDir
			}
			cf, kf := issue(t, c, d, *req)
			kp, _ = LoadKeyPair(cf, kf)
		}
		return ClientConfig(kp, roots, name)
	}
	now := time.Now()
	cases := []struct {
		name       string
		client     *tls.Config
		wantOK     bool
		wantClient bool // the server saw a verified client certificate
	}{
		{"node certificate", client(&Request{Role: RoleNode, Name: "a"}, false, pool, "brain.example"), true, true},
		{"no client certificate", client(nil, false, pool, "brain.example"), true, false},
		{"client from another CA", client(&Request{Role: RoleAdmin, Name: "a"}, true, pool, "brain.example"), false, false},
		{"expired client", client(&Request{Role: RoleAdmin, Name: "old", NotBefore: now.Add(-48 * time.Hour), NotAfter: now.Add(-24 * time.Hour)}, false, pool, "brain.example"), false, false},
		{"client not yet valid", client(&Request{Role: RoleAdmin, Name: "new", NotBefore: now.Add(24 * time.Hour), NotAfter: now.Add(48 * time.Hour)}, false, pool, "brain.example"), false, false},
		{"server name not in certificate", client(nil, false, pool, "evil.example"), false, false},
		{"server from another CA", client(nil, false, otherPool, "brain.example"), false, false},
	}
	for _, c := range cases {
		sErr, cErr, st := handshake(t, server, c.client)
		ok := sErr == nil && cErr == nil
		if ok != c.wantOK {
			t.Errorf("%s: server err %v, client err %v; want ok=%v", c.name, sErr, cErr, c.wantOK)
			continue
		}
		if got := len(st.VerifiedChains) > 0; ok && got != c.wantClient {
			t.Errorf("%s: verified client = %v, want %v", c.name, got, c.wantClient)
		}
	}
}

func TestKeyPairRereadsRotatedFilesAndKeepsLastGood(t *testing.T) {
	ca, dir := newCA(t)
	certFile, keyFile := issue(t, ca, dir, Request{Role: RoleNode, Name: "a"})
	pair, err := LoadKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	first := pair.Leaf().SerialNumber
	issue(t, ca, dir, Request{Role: RoleNode, Name: "a"}) // same files, new serial
	if second := pair.Leaf().SerialNumber; second.Cmp(first) == 0 {
		t.Fatal("rotated certificate not picked up")
	}
	rotated := pair.Leaf().SerialNumber
	if err := os.WriteFile(certFile, []byte("garbage"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := pair.Leaf(); got == nil || got.SerialNumber.Cmp(rotated) != 0 {
		t.Errorf("a broken rotation replaced the last good certificate: %v", got)
	}
}

func TestPoolRereadsRotatedBundle(t *testing.T) {
	_, dir := newCA(t)
	other, _ := newCA(t)
	file := filepath.Join(dir, CACert)
	pool, err := LoadPool(file)
	if err != nil {
		t.Fatal(err)
	}
	bundle := append(mustRead(t, file), other.CertPEM...)
	if err := writeAtomic(file, bundle, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := len(pool.Certificates()); n != 2 {
		t.Errorf("bundle after rotation holds %d certificates, want 2", n)
	}
}

func mustRead(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBootstrapIsIdempotentAndCoversNewNames(t *testing.T) {
	dir := t.TempDir()
	b, err := Bootstrap(dir, []string{"localhost", "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Created) != 3 {
		t.Fatalf("first bootstrap created %v, want CA, server and admin", b.Created)
	}
	if st, _ := os.Stat(b.CAKey); st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", st.Mode().Perm())
	}
	again, err := Bootstrap(dir, []string{"127.0.0.1"})
	if err != nil || len(again.Created) != 0 {
		t.Fatalf("second bootstrap created %v (%v), want nothing", again.Created, err)
	}
	more, err := Bootstrap(dir, []string{"127.0.0.1", "10.9.8.7", "brain.example"})
	if err != nil || len(more.Created) != 1 || more.Created[0] != b.ServerCert {
		t.Fatalf("bootstrap with a new address created %v (%v), want only the server certificate", more.Created, err)
	}
	pair, _ := LoadKeyPair(b.ServerCert, b.ServerKey)
	if err := pair.Leaf().VerifyHostname("10.9.8.7"); err != nil {
		t.Error(err)
	}
	admin, _ := LoadKeyPair(b.AdminCert, b.AdminKey)
	if role, _, _ := IdentityOf(admin.Leaf()); role != RoleAdmin {
		t.Errorf("admin credential role %q", role)
	}
}

func TestTokenFileFollowsRotation(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := NewTokenFile(f)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := tok.GetRequestMetadata(t.Context())
	if md["authorization"] != "Bearer one" {
		t.Fatalf("metadata %v", md)
	}
	if err := writeAtomic(f, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	md, _ = tok.GetRequestMetadata(t.Context())
	if md["authorization"] != "Bearer two" {
		t.Errorf("after rotation: %v", md)
	}
	if !tok.RequireTransportSecurity() {
		t.Error("a token may travel in plaintext")
	}
	if _, err := NewTokenFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing token file accepted")
	}
}

// TestCredentialsCheckTheDialedAddress checks that a client dialing a brain by IP address
// verifies that address against the certificate: Go sends no SNI for an IP, so without the
// dialed name any certificate of the CA would pass.
func TestCredentialsCheckTheDialedAddress(t *testing.T) {
	ca, dir := newCA(t)
	pool, _ := LoadPool(filepath.Join(dir, CACert))
	for _, c := range []struct {
		sans   []net.IP
		wantOK bool
	}{
		{[]net.IP{net.ParseIP("127.0.0.1")}, true},
		{[]net.IP{net.ParseIP("127.0.0.2")}, false},
	} {
		certFile, keyFile := issue(t, ca, dir, Request{Role: RoleServer, Name: "brain", IPs: c.sans})
		pair, _ := LoadKeyPair(certFile, keyFile)
		lis, err := tls.Listen("tcp", "127.0.0.1:0", ServerConfig(pair, pool))
		if err != nil {
			t.Fatal(err)
		}
		go func() {
			if conn, err := lis.Accept(); err == nil {
				_ = conn.(*tls.Conn).Handshake()
				conn.Close()
			}
		}()
		raw, err := net.Dial("tcp", lis.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = Credentials(nil, pool, "").ClientHandshake(t.Context(), lis.Addr().String(), raw)
		if (err == nil) != c.wantOK {
			t.Errorf("certificate for %v dialed at %s: err %v, want ok=%v", c.sans, lis.Addr(), err, c.wantOK)
		}
		raw.Close()
		lis.Close()
	}
	// ClientConfig alone, with no name and no SNI, fails closed.
	certFile, keyFile := issue(t, ca, dir, Request{Role: RoleServer, Name: "brain", IPs: []net.IP{net.ParseIP("127.0.0.1")}})
	pair, _ := LoadKeyPair(certFile, keyFile)
	if _, cErr, _ := handshake(t, ServerConfig(pair, pool), ClientConfig(nil, pool, "")); cErr == nil {
		t.Error("a handshake with no server name to check passed")
	}
}

func TestSplitSANsTrimsAndDropsEmpties(t *testing.T) {
	dns, ips := SplitSANs(strings.Split(" brain.example, 10.0.0.1,,brain.example ,", ","))
	if len(dns) != 1 || dns[0] != "brain.example" || len(ips) != 1 || !ips[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Errorf("SplitSANs = %v %v", dns, ips)
	}
}
