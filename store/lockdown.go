package store

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// lockedDir is where, inside the data directory, the embedded etcd's listener certificates are
// written (etcd reads them from files).
const lockedDir = "listener-tls"

// lockedURL turns a listen URL into its TLS form: the embedded etcd's listeners always require
// TLS, since etcd ignores client certificate authentication on http:// and unix:// URLs.
func lockedURL(raw string) (url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return url.URL{}, err
	}
	switch u.Scheme {
	case "http", "https":
		u.Scheme = "https"
	case "unix", "unixs":
		u.Scheme = "unixs"
	default:
		return url.URL{}, fmt.Errorf("scheme %q: want http(s) or unix(s)", u.Scheme)
	}
	return *u, nil
}

// lockedValidity is long: the certificates are remade at every start, and nothing would renew
// them while the brain runs.
const lockedValidity = 20 * 365 * 24 * time.Hour

// lockedTLS returns listener TLS settings that no client can pass. The brain reaches its
// embedded etcd in process (v3client), so the client and peer ports have no legitimate users,
// yet they must exist for etcd and stay shut to every local user: without authentication anyone
// could write services straight into etcd, past the brain's checks.
//
// Each start makes a client CA whose private key is dropped as soon as its certificate exists:
// it is never written and never kept, so no client certificate that verifies against it can
// exist, whoever reads the data directory. The server's certificate comes from a second
// throwaway CA, so the one key on disk chains to nothing a client could use. The alternatives
// fall short: embed's ClientAutoTLS/PeerAutoTLS replace the whole TLSInfo with a self-signed
// one, silently dropping ClientCertAuth (TLS, but anyone may connect), and client certificate
// authentication without a trusted CA file lets crypto/tls verify clients against the system
// roots, which publicly issued client certificates chain to.
func lockedTLS(dataDir string, urls []url.URL) (transport.TLSInfo, error) {
	dir := filepath.Join(dataDir, lockedDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return transport.TLSInfo{}, fmt.Errorf("store: listener TLS directory: %w", err)
	}
	// MkdirAll leaves an existing directory's mode alone; the server key must not be readable.
	if err := os.Chmod(dir, 0o700); err != nil {
		return transport.TLSInfo{}, fmt.Errorf("store: listener TLS directory: %w", err)
	}
	unheld, err := pki.NewCA("ganglion embedded etcd: no client may connect", lockedValidity)
	if err != nil {
		return transport.TLSInfo{}, fmt.Errorf("store: listener client CA: %w", err)
	}
	issuer, err := pki.NewCA("ganglion embedded etcd listener", lockedValidity)
	if err != nil {
		return transport.TLSInfo{}, fmt.Errorf("store: listener server CA: %w", err)
	}
	var hosts []string
	for _, u := range urls {
		hosts = append(hosts, u.Hostname())
	}
	dnsNames, ips := pki.SplitSANs(hosts)
	certPEM, keyPEM, err := issuer.Issue(pki.Request{Role: pki.RoleServer, Name: "embedded-etcd", DNSNames: dnsNames, IPs: ips, Validity: lockedValidity})
	if err != nil {
		return transport.TLSInfo{}, fmt.Errorf("store: listener certificate: %w", err)
	}
	// A trusted CA file alone makes etcd require and verify client certificates
	// (TLSInfo.ServerConfig). ClientCertAuth stays off: it would also make the server take a user
	// name from the gRPC peer in every request's context, which in process is the brain's own
	// caller's (an agent's stream, an admin's call), asserted to be TLS (a panic under --insecure).
	info := transport.TLSInfo{
		CertFile:      filepath.Join(dir, "server.crt"),
		KeyFile:       filepath.Join(dir, "server.key"),
		TrustedCAFile: filepath.Join(dir, "unheld-ca.crt"),
	}
	if err := pki.WritePair(dir, "server", certPEM, keyPEM); err != nil {
		return transport.TLSInfo{}, fmt.Errorf("store: write listener certificate: %w", err)
	}
	if err := os.WriteFile(info.TrustedCAFile, unheld.CertPEM, 0o644); err != nil {
		return transport.TLSInfo{}, fmt.Errorf("store: write listener client CA: %w", err)
	}
	return info, nil
}
