package brain_test

import (
	"crypto/tls"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
)

// benchPKI is a benchmark's Ganglion CA with the brain's serving certificate and one node
// certificate per agent, written to files as real agents and brains read them: the benchmarks
// pay for the same file-backed, reloadable TLS as production, handshakes included.
type benchPKI struct {
	*testpki.PKI
	server testpki.Pair
	// handshakes counts client certificates verified by brains serving with brainAuth.
	handshakes atomic.Int64
}

func newBenchPKI(b testing.TB, nodes ...string) *benchPKI {
	b.Helper()
	p := &benchPKI{PKI: testpki.New(b)}
	p.server = p.Server()
	for _, n := range nodes {
		// The agent processes find their files by name alone (nodePair), not through this call.
		if got, want := p.Issue(pki.RoleNode, n), nodePair(p.Dir, n); got != want {
			b.Fatalf("node certificate written to %v, agents look for %v", got, want)
		}
	}
	return p
}

// nodePair is where newBenchPKI wrote node's certificate in dir.
func nodePair(dir, node string) testpki.Pair {
	base := filepath.Join(dir, string(pki.RoleNode)+"-"+node)
	return testpki.Pair{Cert: base + ".crt", Key: base + ".key"}
}

// brainAuth is a brain's authentication with the production server TLS (pki.ServerConfig), and a
// count of each verified client certificate, so a benchmark can show its agents re-authenticated
// rather than resumed a TLS session.
func (p *benchPKI) brainAuth(b testing.TB) auth.Config {
	b.Helper()
	pair, err := pki.LoadKeyPair(p.server.Cert, p.server.Key)
	if err != nil {
		b.Fatal(err)
	}
	pool, err := pki.LoadPool(p.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	cfg := pki.ServerConfig(pair, pool)
	perClient := cfg.GetConfigForClient
	cfg.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		c, err := perClient(hello)
		if c != nil && err == nil {
			c.VerifyConnection = func(cs tls.ConnectionState) error {
				if len(cs.VerifiedChains) > 0 && !cs.DidResume {
					p.handshakes.Add(1)
				}
				return nil
			}
		}
		return c, err
	}
	return auth.Config{TLS: cfg}
}

// nodeCreds is node's mutual TLS towards a brain, from the files newBenchPKI wrote in dir.
func nodeCreds(dir, node string, roots *pki.Pool) (grpc.DialOption, error) {
	pair, err := nodeKeyPair(dir, node)
	if err != nil {
		return nil, err
	}
	return grpc.WithTransportCredentials(pki.Credentials(pair, roots, "")), nil
}

// nodeTLS is node's mutual TLS towards the brain at addr, for a client that is not grpc-go's
// (simh2_test.go).
func nodeTLS(dir, node string, roots *pki.Pool, addr string) (*tls.Config, error) {
	pair, err := nodeKeyPair(dir, node)
	if err != nil {
		return nil, err
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	return pki.ClientConfig(pair, roots, host), nil
}

func nodeKeyPair(dir, node string) (*pki.KeyPair, error) {
	files := nodePair(dir, node)
	return pki.LoadKeyPair(files.Cert, files.Key)
}

// agentCreds is node's mutual TLS, for an agent in the benchmark's own process.
func (p *benchPKI) agentCreds(b testing.TB, node string) grpc.DialOption {
	b.Helper()
	roots, err := pki.LoadPool(p.CAFile)
	if err != nil {
		b.Fatal(err)
	}
	creds, err := nodeCreds(p.Dir, node, roots)
	if err != nil {
		b.Fatal(err)
	}
	return creds
}
