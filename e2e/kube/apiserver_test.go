package kube

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

// The API server listens inside the fabric namespace, where the brains run, so nothing here
// touches the host's own ports. It listens on the fabric's address, as a kubeadm API server
// listens on its node's: that is where the Deployment's brains find it (KUBERNETES_SERVICE_HOST
// is the node's address), and the address its self-signed serving certificate is made out to.
const (
	apiServerHost = netlab.FabricIP
	apiServerPort = "6443"
	apiServerURL  = "https://" + apiServerHost + ":" + apiServerPort
	serviceCIDR   = "10.96.0.0/16"
)

// apiServer is etcd and kube-apiserver running in the lab's fabric namespace.
type apiServer struct {
	t          *testing.T
	bins       kubeBins
	fabric     *netlab.NS
	dir        string
	adminToken string
	// client talks to the API server as an admin (system:masters), from inside the fabric.
	client clientset.Interface
	proc   *proc.Proc
}

// startAPIServer starts etcd and kube-apiserver per ../shared/design/testing.md and waits for
// /readyz.
func startAPIServer(t *testing.T, bins kubeBins, fabric *netlab.NS) *apiServer {
	t.Helper()
	a := &apiServer{t: t, bins: bins, fabric: fabric, dir: t.TempDir(), adminToken: randomHex(16)}
	proc.Start(t, fabric.Command(bins.etcd, "--name", "e2e", "--data-dir", filepath.Join(a.dir, "etcd"),
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "e2e=http://127.0.0.1:2380", "--logger", "zap", "--log-level", "warn")...)

	saKey := filepath.Join(a.dir, "sa.key")
	writeRSAKey(t, saKey)
	tokens := filepath.Join(a.dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(a.adminToken+",e2e-admin,e2e-admin,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a.proc = proc.Start(t, fabric.Command(bins.apiserver,
		"--etcd-servers", "http://127.0.0.1:2379",
		"--service-account-issuer", "https://kubernetes.default.svc",
		"--service-account-key-file", saKey, "--service-account-signing-key-file", saKey,
		"--token-auth-file", tokens, "--authorization-mode", "RBAC",
		"--cert-dir", filepath.Join(a.dir, "certs"), "--secure-port", apiServerPort,
		"--bind-address", apiServerHost, "--advertise-address", apiServerHost,
		"--service-cluster-ip-range", serviceCIDR,
		// As in any real cluster (kubeadm sets it too): the IPVS overlay's agent is privileged.
		"--allow-privileged=true",
		// No kubelets and no controller manager: nothing here needs the kubernetes Service's
		// endpoints, and a loopback address cannot be one.
		"--endpoint-reconciler-type", "none")...)
	cfg := a.restConfig(a.adminToken)
	client, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	a.client = client
	a.waitReady()
	return a
}

// waitReady polls /readyz; the deadline bounds a hang, it measures nothing.
func (a *apiServer) waitReady() {
	deadline := time.Now().Add(2 * time.Minute)
	var last error
	for time.Now().Before(deadline) {
		if a.proc.Exited() {
			a.t.Fatalf("kube-apiserver exited:\n%s", proc.Tail(a.proc.Output(), 4000))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		body, err := a.client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		if err == nil && string(body) == "ok" {
			return
		}
		last = err
		time.Sleep(500 * time.Millisecond)
	}
	a.t.Fatalf("kube-apiserver not ready: %v", last)
}

// restConfig is a client configuration for token whose connections are made in the fabric.
func (a *apiServer) restConfig(token string) *rest.Config {
	return &rest.Config{
		Host: apiServerURL, BearerToken: token, QPS: 100, Burst: 200,
		// The serving certificate is the API server's own self-signed one.
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			err := a.fabric.Do(func() error {
				var err error
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
				return err
			})
			return c, err
		},
	}
}

// caFile is the API server's self-signed serving certificate with its CA, for clients that
// verify it, as in-cluster clients do.
func (a *apiServer) caFile() string { return filepath.Join(a.dir, "certs", "apiserver.crt") }

// kubeconfig writes a kubeconfig for token, for processes running in the fabric.
func (a *apiServer) kubeconfig(name, token string) string {
	path := filepath.Join(a.dir, name+".kubeconfig")
	cfg := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters: [{name: e2e, cluster: {server: %q, insecure-skip-tls-verify: true}}]
users: [{name: %s, user: {token: %q}}]
contexts: [{name: e2e, context: {cluster: e2e, user: %s}}]
current-context: e2e
`, apiServerURL, name, token, name)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		a.t.Fatal(err)
	}
	return path
}

func writeRSAKey(t *testing.T, path string) {
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
