package kube

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// kubeBins are the prerequisites prepare.sh provides.
type kubeBins struct {
	etcd, apiserver, kubectl string
}

// repoRoot is the checkout this test file belongs to.
func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(self)))
}

// requireBins finds etcd on PATH and kube-apiserver and kubectl where prepare.sh caches them:
// $GANGLION_KUBE_CACHE (default /var/cache/ganglion-kube)/<first 16 hex of sha256(go.mod+go.sum)>.
func requireBins(t *testing.T) kubeBins {
	t.Helper()
	b := kubeBins{etcd: testenv.RequireCommand(t, "etcd")}
	var sum []byte
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(repoRoot(), "e2e", "kube", "apiserver", f))
		if err != nil {
			t.Fatal(err)
		}
		sum = append(sum, data...)
	}
	h := sha256.Sum256(sum)
	cache := os.Getenv("GANGLION_KUBE_CACHE")
	if cache == "" {
		cache = "/var/cache/ganglion-kube"
	}
	dir := filepath.Join(cache, hex.EncodeToString(h[:])[:16])
	b.apiserver, b.kubectl = filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "kubectl")
	for _, f := range []string{b.apiserver, b.kubectl} {
		_, err := exec.LookPath(f)
		testenv.Require(t, err == nil, f+" not built: run e2e/kube/prepare.sh")
	}
	return b
}
