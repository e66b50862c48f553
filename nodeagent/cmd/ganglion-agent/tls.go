package main

import (
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// tlsFlags say how the agent proves itself to the brain and checks that it talks to the real one.
type tlsFlags struct {
	insecure                  bool
	caFile, certFile, keyFile string
	tokenFile, serverName     string
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&t.insecure, "insecure", false, "plaintext to a brain started with --insecure on this host (loopback only)")
	fs.StringVar(&t.caFile, "tls-ca", envOr("GANGLION_TLS_CA", ""), "CA bundle the brain's certificate must chain to (env GANGLION_TLS_CA)")
	fs.StringVar(&t.certFile, "tls-cert", envOr("GANGLION_TLS_CERT", ""), "this node's certificate from the Ganglion CA (bare metal; env GANGLION_TLS_CERT)")
	fs.StringVar(&t.keyFile, "tls-key", envOr("GANGLION_TLS_KEY", ""), "the node certificate's key (env GANGLION_TLS_KEY)")
	fs.StringVar(&t.tokenFile, "token-file", envOr("GANGLION_TOKEN_FILE", ""), "a projected ServiceAccount token to authenticate with instead of a certificate (Kubernetes mode; re-read when it changes)")
	fs.StringVar(&t.serverName, "brain-server-name", "", "the name the brain's certificate must carry (default: the host of each --brain address)")
}

// dial returns the credentials of the stream, and what to watch for the expiry metric. Files are
// re-read when they change, so rotation needs no restart.
func (t *tlsFlags) dial(brains []string, log *slog.Logger) ([]grpc.DialOption, prometheus.Collector, error) {
	if t.insecure {
		for _, b := range brains {
			if !loopbackAddr(b) {
				return nil, nil, fmt.Errorf("--insecure: brain %s is not on loopback: plaintext would cross the network", b)
			}
		}
		log.Warn("INSECURE: plaintext stream to the brain")
		return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil, nil
	}
	if t.caFile == "" {
		return nil, nil, errors.New("--tls-ca: required (or --insecure for a brain on this host's loopback)")
	}
	roots, err := pki.LoadPool(t.caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("--tls-ca: %w", err)
	}
	var pair *pki.KeyPair
	var opts []grpc.DialOption
	switch {
	case t.certFile != "" && t.tokenFile != "":
		return nil, nil, errors.New("--tls-cert and --token-file: give one")
	case t.certFile != "":
		if pair, err = pki.LoadKeyPair(t.certFile, t.keyFile); err != nil {
			return nil, nil, fmt.Errorf("--tls-cert: %w", err)
		}
	case t.tokenFile != "":
		tok, err := pki.NewTokenFile(t.tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--token-file: %w", err)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(tok))
	default:
		return nil, nil, errors.New("--tls-cert/--tls-key or --token-file: the agent needs an identity")
	}
	creds := pki.Credentials(pair, roots, t.serverName)
	opts = append(opts, grpc.WithTransportCredentials(creds))
	return opts, pki.NewExpiryCollector([]*pki.KeyPair{pair}, []*pki.Pool{roots}), nil
}

func loopbackAddr(hostPort string) bool {
	host, _, err := net.SplitHostPort(hostPort)
	if err != nil {
		return false
	}
	ip := net.ParseIP(strings.Trim(host, "[]"))
	return host == "localhost" || (ip != nil && ip.IsLoopback())
}
