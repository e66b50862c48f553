package kubelab

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

// Bins are the prerequisites e2e/kube/prepare.sh provides: etcd from Debian's etcd-server, and
// the binaries built from the module pinned in e2e/kube/apiserver.
type Bins struct {
	Etcd, APIServer, Kubectl string
	// KubeProxy is set by RequireBins only when asked for (prepare.sh kube-proxy builds it).
	KubeProxy string
}

// repoRoot is the checkout this package belongs to.
func repoRoot() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(self)))
}

// CacheDir is where prepare.sh caches the pinned binaries: $GANGLION_KUBE_CACHE (default
// /var/cache/ganglion-kube)/<first 16 hex of sha256(go.mod+go.sum)> of e2e/kube/apiserver, so a
// change to the pin never finds an old build.
func CacheDir() (string, error) {
	var sum []byte
	for _, f := range []string{"go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(repoRoot(), "e2e", "kube", "apiserver", f))
		if err != nil {
			return "", err
		}
		sum = append(sum, data...)
	}
	h := sha256.Sum256(sum)
	cache := os.Getenv("GANGLION_KUBE_CACHE")
	if cache == "" {
		cache = "/var/cache/ganglion-kube"
	}
	return filepath.Join(cache, hex.EncodeToString(h[:])[:16]), nil
}

// RequireBins finds etcd on PATH and the pinned binaries in CacheDir, kube-proxy too when
// withKubeProxy is set; it skips (in CI: fails) when one is missing. It never builds them: a
// test's timeout need not cover a cold build.
func RequireBins(t testing.TB, withKubeProxy bool) Bins {
	t.Helper()
	b := Bins{Etcd: testenv.RequireCommand(t, "etcd")}
	dir, err := CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	b.APIServer, b.Kubectl = filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "kubectl")
	need, hint := []string{b.APIServer, b.Kubectl}, "run e2e/kube/prepare.sh"
	if withKubeProxy {
		b.KubeProxy = filepath.Join(dir, "kube-proxy")
		need, hint = append(need, b.KubeProxy), "run e2e/kube/prepare.sh kube-proxy"
	}
	for _, f := range need {
		_, err := exec.LookPath(f)
		testenv.Require(t, err == nil, f+" not built: "+hint)
	}
	return b
}
