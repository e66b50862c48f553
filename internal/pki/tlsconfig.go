package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
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
// and name serverName (the host the client dialed when empty); pair, when set, is offered as the
// client certificate. Roots and pair are re-read when their files change, which is why the
// verification is done here rather than by a static RootCAs.
func ClientConfig(pair *KeyPair, roots *Pool, serverName string) *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		// The standard verification is replaced, not skipped: VerifyConnection below checks the
		// chain and the name against the roots as they are now.
		InsecureSkipVerify: true, //nolint:gosec // verified in VerifyConnection
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyServer(cs, roots)
		},
	}
	if pair != nil {
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return pair.Get()
		}
	}
	return c
}

func verifyServer(cs tls.ConnectionState, roots *Pool) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("tls: the server sent no certificate")
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
		DNSName:       cs.ServerName,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return err
}
