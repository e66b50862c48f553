// Package kubelab runs a real kube-apiserver on Debian's etcd inside a network namespace, for
// tests and benchmarks that need the Kubernetes API itself: e2e/kube (Kubernetes mode end to
// end) and e2e/peer (Ganglion beside upstream kube-proxy). The binaries come from the cache
// e2e/kube/prepare.sh fills (Bins).
package kubelab

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
)

// The API server listens inside the fabric namespace, so nothing here touches the host's own
// ports. It listens on the fabric's address, as a kubeadm API server listens on its node's: that
// is where processes in node namespaces find it, and the address its self-signed serving
// certificate is made out to.
const (
	Host        = netlab.FabricIP
	Port        = "6443"
	URL         = "https://" + Host + ":" + Port
	ServiceCIDR = "10.96.0.0/16"
)

// APIServer is etcd and kube-apiserver running in a fabric namespace until the test ends.
type APIServer struct {
	t      testing.TB
	Bins   Bins
	Fabric *netlab.NS
	// Dir holds etcd's data, the ServiceAccount key (sa.key), tokens, certificates, kubeconfigs.
	Dir string
	// AdminToken authenticates as system:masters.
	AdminToken string
	// Client talks to the API server as an admin, from inside the fabric.
	Client clientset.Interface
	Proc   *proc.Proc
}

// Start starts etcd and kube-apiserver per ../shared/design/testing.md in fabric and waits for
// /readyz.
func Start(t testing.TB, bins Bins, fabric *netlab.NS) *APIServer {
	t.Helper()
	a := &APIServer{t: t, Bins: bins, Fabric: fabric, Dir: t.TempDir(), AdminToken: randomHex(16)}
	proc.Start(t, fabric.Command(bins.Etcd, "--name", "e2e", "--data-dir", filepath.Join(a.Dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "e2e=http://127.0.0.1:2380", "--logger", "zap", "--log-level", "warn")...)

	saKey := filepath.Join(a.Dir, "sa.key")
	writeRSAKey(t, saKey)
	tokens := filepath.Join(a.Dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(a.AdminToken+",e2e-admin,e2e-admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.Proc = proc.Start(t, fabric.Command(bins.APIServer,
		"--etcd-servers", "http://127.0.0.1:2379",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey, "--service-account-signing-key-file", saKey,
		"--token-auth-file", tokens, "--authorization-mode", "RBAC",
		"--cert-dir", filepath.Join(a.Dir, "certs"), "--secure-port", Port,
		"--bind-address", Host, "--advertise-address", Host,
		"--service-cluster-ip-range", ServiceCIDR,
		// As in any real cluster (kubeadm sets it too): the IPVS overlay's agent is privileged.
		"--allow-privileged=true",
		// No kubelets and no controller manager: nothing here needs the kubernetes Service's
		// endpoints, and a loopback address cannot be one.
		"--endpoint-reconciler-type", "none")...)
	client, err := clientset.NewForConfig(a.RESTConfig(a.AdminToken))
	if err != nil {
		t.Fatal(err)
	}
	a.Client = client
	a.waitReady()
	return a
}

// waitReady polls /readyz; the deadline bounds a hang, it measures nothing.
func (a *APIServer) waitReady() {
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		if a.Proc.Exited() {
			a.t.Fatalf("kube-apiserver exited:\n%s", proc.Tail(a.Proc.Output(), 4000))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := a.Client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return
		}
		last = err
		time.Sleep(500 * time.Millisecond)
	}
	a.t.Fatalf("kube-apiserver not ready: %v", last)
}

// RESTConfig is a client configuration for token whose connections are made in the fabric.
func (a *APIServer) RESTConfig(token string) *rest.Config {
	return &rest.Config{
		Host: URL, BearerToken: token, QPS: 100, Burst: 200,
		// The serving certificate is the API server's own self-signed one.
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := a.Fabric.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
}

// CAFile is the API server's self-signed serving certificate with its CA, for clients that
// verify it, as in-cluster clients do.
func (a *APIServer) CAFile() string { return filepath.Join(a.Dir, "certs", "apiserver.crt") }

// Kubeconfig writes a kubeconfig for token, for processes in the fabric or in a namespace
// routed to it.
func (a *APIServer) Kubeconfig(name, token string) string {
	path := filepath.Join(a.Dir, name+".kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: %s, user: {token: %q}}]
contexts: [{name: e2e, context: {cluster: e2e, user: %s}}]
current-context: e2e
`, URL, name, token, name)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		a.t.Fatal(err)
	}
	return path
}

func writeRSAKey(t testing.TB, path string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
