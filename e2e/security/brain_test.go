package security

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
)

// bareMetal is a brain started the README's bare-metal way: the embedded etcd and no security
// flag but where to keep the PKI it creates on its first start (the default, /var/lib/ganglion/pki,
// is the host's, not a test's).
type bareMetal struct {
	*proc.Brain
	// pkiDir is where the brain created its CA, serving certificate and local admin credential.
	pkiDir string
	// caFile is the CA certificate it created there; certs is where the test's identities go.
	caFile, certs string
}

func startBareMetal(t *testing.T) *bareMetal {
	t.Helper()
	dir := t.TempDir()
	b := &bareMetal{pkiDir: filepath.Join(dir, "pki"), certs: filepath.Join(dir, "certs")}
	b.caFile = filepath.Join(b.pkiDir, pki.CACert)
	b.Brain = proc.StartBrain(t, testenv.FreeAddr(t), append(proc.EtcdArgs(t, dir), "--pki-dir", b.pkiDir)...)
	b.WaitReady(t)
	return b
}

// admin is the local admin credential the brain created beside its CA.
func (b *bareMetal) admin() *testpki.Pair {
	return &testpki.Pair{Cert: filepath.Join(b.pkiDir, pki.AdminBase+".crt"), Key: filepath.Join(b.pkiDir, pki.AdminBase+".key")}
}

// issue gets a certificate for role and name from the brain's CA with `ganglionctl pki issue`, as
// an operator would.
func (b *bareMetal) issue(t *testing.T, role pki.Role, name string) testpki.Pair {
	t.Helper()
	out, err := proc.Ctl(t, nil, "pki", "issue", string(role), name, "--dir", b.pkiDir, "--out", b.certs)
	if err != nil {
		t.Fatalf("ganglionctl pki issue %s %s: %v\n%s", role, name, err, out)
	}
	return testpki.Pair{Cert: filepath.Join(b.certs, name+".crt"), Key: filepath.Join(b.certs, name+".key")}
}

// forge issues from the brain's own CA a certificate valid from notBefore to notAfter, which no
// command hands out: an expired one, or one not valid yet. The CA is genuine; only the dates
// are wrong.
func (b *bareMetal) forge(t *testing.T, role pki.Role, name string, notBefore, notAfter time.Time) testpki.Pair {
	t.Helper()
	ca, err := pki.LoadCA(b.caFile, filepath.Join(b.pkiDir, pki.CAKey))
	if err != nil {
		t.Fatal(err)
	}
	cert, key, err := ca.Issue(pki.Request{Role: role, Name: name, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WritePair(b.certs, name, cert, key); err != nil {
		t.Fatal(err)
	}
	return testpki.Pair{Cert: filepath.Join(b.certs, name+".crt"), Key: filepath.Join(b.certs, name+".key")}
}

// TestBareMetalBrain runs every refusal, and what each identity may still do, against one brain
// started with no security flags: starting it is most of the cost, the checks are quick.
func TestBareMetalBrain(t *testing.T) {
	b := startBareMetal(t)
	for _, c := range []struct {
		name string
		run  func(*testing.T, *bareMetal)
	}{
		{"plaintext gRPC fails the handshake", plaintextRefused},
		{"a client certificate from another CA fails the handshake", foreignCARefused},
		{"an expired client certificate fails the handshake", expiredRefused},
		{"a not yet valid client certificate fails the handshake", notYetValidRefused},
		{"a peer without a certificate may not Apply or Get", anonymousRefused},
		{"anonymous grpcurl: reflection refused, health answers", anonymousGrpcurl},
		{"a reader may Get but not Apply", readerMayOnlyRead},
		{"a node certificate may neither Apply nor Get", nodeMayNotAdminister},
		{"node A's certificate cannot open node B's stream", nodeStreamsOnlyItself},
		{"ganglionctl on the brain's host needs no flags", ctlFindsLocalAdmin},
		{"an exec health check is refused at apply time by default", execCheckRefused},
		{"a VIP or backend on loopback or the metadata address is refused", specialAddressRefused},
		{"an httpGet path naming a host is refused", probeAuthorityRefused},
		{"the certificates' expiry is a metric", expiryMetric},
		{"refusals are counted", refusalsCounted},
	} {
		t.Run(c.name, func(t *testing.T) { c.run(t, b) })
	}
}
