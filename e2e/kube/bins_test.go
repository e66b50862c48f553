package kube

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/kubelab"
)

// kubeBins are the prerequisites prepare.sh provides (found by e2e/kubelab).
type kubeBins struct {
	etcd, apiserver, kubectl string
}

// repoRoot is the checkout this test file belongs to.
func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(self)))
}

// requireBins finds etcd on PATH and kube-apiserver and kubectl where prepare.sh caches them
// (kubelab.CacheDir).
func requireBins(t *testing.T) kubeBins {
	t.Helper()
	b := kubelab.RequireBins(t, false)
	return kubeBins{etcd: b.Etcd, apiserver: b.APIServer, kubectl: b.Kubectl}
}
