package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// defaultPKIDir is where a brain started with no PKI flags keeps its CA and the local admin
// credential: ganglionctl on that host uses them without flags.
const defaultPKIDir = "/var/lib/ganglion/pki"

// credFlags say who ganglionctl is to the brain.
type credFlags struct {
	insecure                  bool
	pkiDir                    string
	certFile, keyFile, caFile string
	serverName                string
}

func (c *credFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&c.insecure, "insecure", false, "plaintext, for a brain started with --insecure")
	fs.StringVar(&c.pkiDir, "pki-dir", envOr("GANGLION_PKI_DIR", defaultPKIDir), "where to find admin.crt, admin.key and ca.crt when --cert is not given (env GANGLION_PKI_DIR)")
	fs.StringVar(&c.certFile, "cert", os.Getenv("GANGLION_CERT"), "client certificate (env GANGLION_CERT)")
	fs.StringVar(&c.keyFile, "key", os.Getenv("GANGLION_KEY"), "client key (env GANGLION_KEY)")
	fs.StringVar(&c.caFile, "ca", os.Getenv("GANGLION_CA"), "CA bundle the brain's certificate must chain to (env GANGLION_CA)")
	fs.StringVar(&c.serverName, "server-name", "", "the name the brain's certificate must carry (default: the host of --server)")
}

// dialOption returns the transport credentials: plaintext only when asked; otherwise TLS with
// the given certificate, or the local admin credential of --pki-dir.
func (c *credFlags) dialOption() (grpc.DialOption, error) {
	if c.insecure {
		return grpc.WithTransportCredentials(insecure.NewCredentials()), nil
	}
	cert, key, ca := c.certFile, c.keyFile, c.caFile
	if ca == "" {
		ca = filepath.Join(c.pkiDir, pki.CACert)
	}
	if cert == "" {
		local := filepath.Join(c.pkiDir, pki.AdminBase+".crt")
		if _, err := os.Stat(local); err == nil {
			cert, key = local, filepath.Join(c.pkiDir, pki.AdminBase+".key")
		} else if !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("--pki-dir: %w", err)
		}
	}
	roots, err := pki.LoadPool(ca)
	if err != nil {
		return nil, fmt.Errorf("--ca: %w (give --ca, or --pki-dir where the brain keeps ca.crt)", err)
	}
	var pair *pki.KeyPair
	if cert != "" {
		if pair, err = pki.LoadKeyPair(cert, key); err != nil {
			return nil, fmt.Errorf("--cert: %w", err)
		}
	}
	return grpc.WithTransportCredentials(pki.Credentials(pair, roots, c.serverName)), nil
}
