// Package testpki gives tests a Ganglion CA in a temporary directory and certificates from it,
// written to files as the processes under test read them.
package testpki

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// PKI is a CA in a test's temporary directory.
type PKI struct {
	t   testing.TB
	CA  *pki.CA
	Dir string
	// CAFile is the CA certificate, for --tls-ca, --client-ca and --ca flags.
	CAFile string
}

// Pair names a certificate file and its key file.
type Pair struct{ Cert, Key string }

// New creates a CA for the test.
func New(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	ca, _, err := pki.EnsureCA(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	return &PKI{t: t, CA: ca, Dir: dir, CAFile: filepath.Join(dir, pki.CACert)}
}

// Issue writes a certificate for role and name, valid now for a day; sans are the host names
// and addresses of a server certificate.
func (p *PKI) Issue(role pki.Role, name string, sans ...string) Pair {
	p.t.Helper()
	return p.IssueValid(role, name, time.Now().Add(-time.Minute), time.Now().Add(24*time.Hour), sans...)
}

// IssueValid writes a certificate valid from notBefore to notAfter (expired or not yet valid
// ones, for refusal tests).
func (p *PKI) IssueValid(role pki.Role, name string, notBefore, notAfter time.Time, sans ...string) Pair {
	p.t.Helper()
	dns, ips := pki.SplitSANs(sans)
	cert, key, err := p.CA.Issue(pki.Request{Role: role, Name: name, DNSNames: dns, IPs: ips, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		p.t.Fatal(err)
	}
	base := string(role) + "-" + name
	if err := pki.WritePair(p.Dir, base, cert, key); err != nil {
		p.t.Fatal(err)
	}
	return Pair{Cert: filepath.Join(p.Dir, base+".crt"), Key: filepath.Join(p.Dir, base+".key")}
}

// Server writes the brain's serving certificate for sans (127.0.0.1 and localhost always).
func (p *PKI) Server(sans ...string) Pair {
	return p.Issue(pki.RoleServer, "brain", append([]string{"127.0.0.1", "::1", "localhost"}, sans...)...)
}

// BrainFlags are the serve flags of a brain with the server certificate for sans.
func (p *PKI) BrainFlags(sans ...string) []string {
	s := p.Server(sans...)
	return []string{"--tls-cert", s.Cert, "--tls-key", s.Key, "--client-ca", p.CAFile}
}

// AgentFlags are the agent flags of node's identity.
func (p *PKI) AgentFlags(node string) []string {
	n := p.Issue(pki.RoleNode, node)
	return []string{"--tls-ca", p.CAFile, "--tls-cert", n.Cert, "--tls-key", n.Key}
}

// CtlFlags are ganglionctl's flags for an identity of role (admin or reader).
func (p *PKI) CtlFlags(role pki.Role, name string) []string {
	c := p.Issue(role, name)
	return []string{"--ca", p.CAFile, "--cert", c.Cert, "--key", c.Key}
}
