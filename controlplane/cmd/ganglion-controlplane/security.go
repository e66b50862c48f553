package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// securityFlags say how the brain's gRPC listener is secured.
type securityFlags struct {
	insecure                  bool
	pkiDir                    string
	certFile, keyFile, caFile string
	sans                      string
}

func (s *securityFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&s.insecure, "insecure", false, "serve plaintext with no authentication: every caller is an administrator. Forces --listen onto loopback")
	fs.StringVar(&s.pkiDir, "pki-dir", "/var/lib/ganglion/pki", "without --tls-cert: where the brain keeps the CA, serving certificate and local admin credential it creates on first start")
	fs.StringVar(&s.certFile, "tls-cert", "", "the serving certificate (PEM; re-read when it changes), e.g. a Secret's tls.crt")
	fs.StringVar(&s.keyFile, "tls-key", "", "the serving certificate's key (PEM; re-read when it changes), e.g. a Secret's tls.key")
	fs.StringVar(&s.caFile, "client-ca", "", "with --tls-cert: the CA bundle client certificates must chain to, e.g. a Secret's ca.crt")
	fs.StringVar(&s.sans, "tls-san", "", "comma-separated extra host names and addresses for the certificate created in --pki-dir")
}

// security is what the flags amount to.
type security struct {
	auth auth.Config
	// listen is --listen, moved onto loopback in the insecure mode.
	listen string
	// expiry exports the expiry of the certificates in use.
	expiry prometheus.Collector
}

// secure reads the flags: an explicit certificate, the PKI directory (created on first start),
// or the insecure mode.
func (s *securityFlags) secure(listen string, log *slog.Logger) (*security, error) {
	if s.insecure {
		if s.certFile != "" {
			return nil, errors.New("--insecure: cannot be used with --tls-cert")
		}
		addr, err := loopbackOnly(listen)
		if err != nil {
			return nil, err
		}
		log.Warn("INSECURE: plaintext gRPC without authentication; every caller on this host is an administrator", "listen", addr)
		return &security{auth: auth.Config{Insecure: true}, listen: addr}, nil
	}
	certFile, keyFile, caFile := s.certFile, s.keyFile, s.caFile
	switch {
	case certFile == "" && (keyFile != "" || caFile != ""):
		return nil, errors.New("--tls-key and --client-ca go with --tls-cert")
	case certFile != "" && (keyFile == "" || caFile == ""):
		return nil, errors.New("--tls-cert: needs --tls-key and --client-ca")
	case certFile == "":
		b, err := pki.Bootstrap(s.pkiDir, append(pki.LocalSANs(), strings.Split(s.sans, ",")...))
		if err != nil {
			return nil, fmt.Errorf("--pki-dir: %w", err)
		}
		for _, f := range b.Created {
			log.Info("pki: created", "file", f)
		}
		log.Info("pki: local admin credential for ganglionctl", "cert", b.AdminCert, "key", b.AdminKey, "ca", b.CACert)
		certFile, keyFile, caFile = b.ServerCert, b.ServerKey, b.CACert
	}
	pair, err := pki.LoadKeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	pool, err := pki.LoadPool(caFile)
	if err != nil {
		return nil, fmt.Errorf("--client-ca: %w", err)
	}
	return &security{auth: auth.Config{TLS: pki.ServerConfig(pair, pool)}, listen: listen,
		expiry: pki.NewExpiryCollector([]*pki.KeyPair{pair}, []*pki.Pool{pool})}, nil
}

// loopbackOnly moves addr's host onto loopback unless it is there already.
func loopbackOnly(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--listen: %w", err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return addr, nil
	}
	return net.JoinHostPort("127.0.0.1", port), nil
}
