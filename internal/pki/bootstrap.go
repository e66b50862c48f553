package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Files in a PKI directory. The brain bootstraps them on first start, as k3s does, so that a
// single machine needs no PKI commands; ganglionctl on that host finds admin.crt without flags.
const (
	CACert     = "ca.crt"
	CAKey      = "ca.key"
	ServerBase = "server" // server.crt, server.key: the brain's serving certificate
	AdminBase  = "admin"  // admin.crt, admin.key: a local administrator's credential
)

// Bootstrapped is what Bootstrap left in a directory.
type Bootstrapped struct {
	Dir                   string
	CACert, CAKey         string
	ServerCert, ServerKey string
	AdminCert, AdminKey   string
	// Created lists what this call wrote, for the log.
	Created []string
}

// Bootstrap makes sure dir holds a CA, a serving certificate for sans (host names and
// addresses) and a local admin credential, creating what is missing. A serving certificate that
// lacks one of sans, or expires within a month, is issued anew from the CA.
func Bootstrap(dir string, sans []string) (*Bootstrapped, error) {
	b := &Bootstrapped{Dir: dir,
		CACert: filepath.Join(dir, CACert), CAKey: filepath.Join(dir, CAKey),
		ServerCert: filepath.Join(dir, ServerBase+".crt"), ServerKey: filepath.Join(dir, ServerBase+".key"),
		AdminCert: filepath.Join(dir, AdminBase+".crt"), AdminKey: filepath.Join(dir, AdminBase+".key"),
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("pki dir: %w", err)
	}
	ca, created, err := EnsureCA(dir, 0)
	if err != nil {
		return nil, err
	}
	if created {
		b.Created = append(b.Created, b.CACert)
	}
	dnsNames, ips := splitSANs(sans)
	if !servesAll(b.ServerCert, dnsNames, ips) {
		cert, key, err := ca.Issue(Request{Role: RoleServer, Name: "brain", DNSNames: dnsNames, IPs: ips})
		if err != nil {
			return nil, err
		}
		if err := WritePair(dir, ServerBase, cert, key); err != nil {
			return nil, err
		}
		b.Created = append(b.Created, b.ServerCert)
	}
	if _, err := os.Stat(b.AdminCert); errors.Is(err, fs.ErrNotExist) {
		cert, key, err := ca.Issue(Request{Role: RoleAdmin, Name: "local-admin"})
		if err != nil {
			return nil, err
		}
		if err := WritePair(dir, AdminBase, cert, key); err != nil {
			return nil, err
		}
		b.Created = append(b.Created, b.AdminCert)
	}
	return b, nil
}

// EnsureCA loads the CA in dir, creating it (valid for validity, default ten years) when there
// is none.
func EnsureCA(dir string, validity time.Duration) (ca *CA, created bool, err error) {
	certFile, keyFile := filepath.Join(dir, CACert), filepath.Join(dir, CAKey)
	ca, err = LoadCA(certFile, keyFile)
	if !errors.Is(err, fs.ErrNotExist) {
		return ca, false, err
	}
	if validity == 0 {
		validity = 10 * 365 * 24 * time.Hour
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("pki dir: %w", err)
	}
	if ca, err = NewCA("ganglion-ca", validity); err != nil {
		return nil, false, err
	}
	key, err := ca.KeyPEM()
	if err != nil {
		return nil, false, err
	}
	if err := writeAtomic(keyFile, key, 0o600); err != nil {
		return nil, false, err
	}
	return ca, true, writeAtomic(certFile, ca.CertPEM, 0o644)
}

// SplitSANs sorts names into host names and addresses, trimming spaces and dropping empty
// entries and repeats, so a comma-separated flag can be split and handed over as it is.
func SplitSANs(sans []string) ([]string, []net.IP) { return splitSANs(sans) }

// LocalSANs are the names a brain is reached by on this host: localhost, the host name, and
// every address of its interfaces.
func LocalSANs() []string {
	out := []string{"localhost"}
	if h, err := os.Hostname(); err == nil && h != "" {
		out = append(out, h)
	}
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLinkLocalUnicast() {
			out = append(out, ipn.IP.String())
		}
	}
	return out
}

func splitSANs(sans []string) ([]string, []net.IP) {
	var dnsNames []string
	var ips []net.IP
	for _, s := range sans {
		s = strings.TrimSpace(s)
		if ip := net.ParseIP(s); ip != nil {
			if !slices.ContainsFunc(ips, ip.Equal) {
				ips = append(ips, ip)
			}
		} else if s != "" && !slices.Contains(dnsNames, s) {
			dnsNames = append(dnsNames, s)
		}
	}
	return dnsNames, ips
}

// servesAll says whether the certificate at path names every one of dnsNames and ips and lives
// for another month.
func servesAll(path string, dnsNames []string, ips []net.IP) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	c, err := parseCert(b)
	if err != nil || time.Until(c.NotAfter) < 30*24*time.Hour {
		return false
	}
	for _, n := range dnsNames {
		if c.VerifyHostname(n) != nil {
			return false
		}
	}
	for _, ip := range ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	return true
}
