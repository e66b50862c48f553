package pki

import (
	"context"
	"net"

	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"google.golang.org/grpc/credentials"
)

// ServerConfig is the brain's TLS: its certificate from pair, and client certificates verified
// against clientCAs when a client offers one. A client without a certificate still completes the
// handshake (an agent in Kubernetes mode authenticates with a token, a probe asks for health);
// what it may call is authorization's business. A client certificate from another CA, expired or
// not yet valid fails the handshake. Both files are re-read when they change.
func ServerConfig(pair *KeyPair, clientCAs *Pool) *tls.Config {
	base := &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return pair.Get()
		},
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			c := base.Clone()
			if clientCAs != nil {
				pool, err := clientCAs.Get()
				if err != nil {
					return nil, err
				}
				c.ClientCAs = pool
				c.ClientAuth = tls.VerifyClientCertIfGiven
			}
			return c, nil
		},
	}
}

// ClientConfig is a client's TLS towards a brain: the server's certificate must chain to roots
// and name serverName; pair, when set, is offered as the client certificate. Roots and pair are
// re-read when their files change, which is why the verification is done here rather than by a
// static RootCAs. With serverName empty the name is the SNI sent, and since Go sends none for an
// IP address a handshake with nothing to check the name against fails: gRPC clients use
// Credentials, which names the host they dial.
func ClientConfig(pair *KeyPair, roots *Pool, serverName string) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// The standard verification is replaced, not skipped: VerifyConnection below checks the
		// chain and the name against the roots as they are now.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			name := serverName
			if name == "" {
				name = cs.ServerName
			}
			return verifyServer(cs, roots, name)
		},
	}
	if pair != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return pair.Get()
		}
	}
	return c
}

func verifyServer(cs tls.ConnectionState, roots *Pool, name string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
	}
	if name == "" {
		// x509 skips the name check for an empty name: any certificate of the CA would do.
		return errors.New("tls: no server name to verify the brain's certificate against")
	}
	pool, err := roots.Get()
	if err != nil {
		return fmt.Errorf("tls: CA bundle: %w", err)
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots:         pool,
		Intermediates: inter,
		DNSName:       name,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}

// Credentials are gRPC transport credentials towards a brain: ClientConfig, verifying the
// brain's certificate against serverName or, when that is empty, the host of each address dialed
// (an IP address included).
func Credentials(pair *KeyPair, roots *Pool, serverName string) credentials.TransportCredentials {
	return &clientCreds{TransportCredentials: credentials.NewTLS(ClientConfig(pair, roots, serverName)),
		pair: pair, roots: roots, serverName: serverName}
}

type clientCreds struct {
	credentials.TransportCredentials
	pair       *KeyPair
	roots      *Pool
	serverName string
}

// ClientHandshake verifies against the name of this dial when none was configured.
func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.serverName != "" {
		return c.TransportCredentials.ClientHandshake(ctx, authority, conn)
	}
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority
	}
	return credentials.NewTLS(ClientConfig(c.pair, c.roots, host)).ClientHandshake(ctx, authority, conn)
}

// Clone implements credentials.TransportCredentials.
func (c *clientCreds) Clone() credentials.TransportCredentials {
	return &clientCreds{TransportCredentials: c.TransportCredentials.Clone(), pair: c.pair, roots: c.roots, serverName: c.serverName}
}
