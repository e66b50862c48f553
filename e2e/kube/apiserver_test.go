package kube

import (
	"testing"

	clientset "k8s.io/client-go/kubernetes"

	"github.com/ganglion-proxy/ganglion/e2e/kubelab"
	"github.com/ganglion-proxy/ganglion/e2e/netlab"
)

// The API server listens inside the fabric namespace, where the brains run, on the fabric's
// address (kubelab): that is where the Deployment's brains find it (KUBERNETES_SERVICE_HOST is the
// node's address), and the address its self-signed serving certificate is made out to.
const (
	apiServerHost = kubelab.Host
	apiServerPort = kubelab.Port
)

// apiServer is etcd and kube-apiserver running in the lab's fabric namespace (kubelab.APIServer),
// with the names these tests use.
type apiServer struct {
	*kubelab.APIServer
	bins       kubeBins
	dir        string
	adminToken string
	// client talks to the API server as an admin (system:masters), from inside the fabric.
	client clientset.Interface
}

// startAPIServer starts etcd and kube-apiserver and waits for /readyz.
func startAPIServer(t *testing.T, bins kubeBins, fabric *netlab.NS) *apiServer {
	t.Helper()
	a := kubelab.Start(t, kubelab.Bins{Etcd: bins.etcd, APIServer: bins.apiserver, Kubectl: bins.kubectl}, fabric)
	return &apiServer{APIServer: a, bins: bins, dir: a.Dir, adminToken: a.AdminToken, client: a.Client}
}

// caFile is the API server's self-signed serving certificate with its CA.
func (a *apiServer) caFile() string { return a.CAFile() }

// kubeconfig writes a kubeconfig for token, for processes running in the fabric.
func (a *apiServer) kubeconfig(name, token string) string { return a.Kubeconfig(name, token) }
