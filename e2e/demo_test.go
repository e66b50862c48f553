package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
)

// TestDemo runs `make demo`'s program: the README's first command must work.
func TestDemo(t *testing.T) {
	netlab.Require(t)
	bin := proc.Binaries(t)
	demo := filepath.Join(t.TempDir(), "demo")
	if out, err := exec.Command("go", "-C", proc.Root(), "build", "-o", demo, "./demo").CombinedOutput(); err != nil {
		t.Fatalf("build demo: %v\n%s", err, out)
	}
	cmd := exec.Command(demo)
	cmd.Env = append(cmd.Environ(), "GANGLION_BIN="+bin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, out)
	}
	for _, want := range []string{"plaintext refused", "spread over 3 backends", "backend-b failing: out of rotation", "backend-b recovered"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}
