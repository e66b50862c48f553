package vm

import (
	"os"
	"os/exec"
	"testing"
)

// TestVMBootsAndRunsGuestTests boots the VM and runs TestGuest* below inside it.
func TestVMBootsAndRunsGuestTests(t *testing.T) {
	if Inside() {
		t.Skip("the outer test does not nest")
	}
	RunGoTest(t, GoTest{Run: "^TestGuest"})
}

// TestGuestKernelHasIPVSAndTools checks what every IPVS test relies on: the modules are loaded
// and the copied tools run with their libraries.
func TestGuestKernelHasIPVSAndTools(t *testing.T) {
	RequireInside(t)
	if _, err := os.Stat("/proc/net/ip_vs"); err != nil {
		t.Fatalf("ip_vs not loaded: %v", err)
	}
	for _, c := range [][]string{{"ipvsadm", "-Ln"}, {"nft", "list", "ruleset"}, {"ip", "-br", "link"}} {
		if out, err := exec.Command(c[0], c[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%v: %v: %s", c, err, out)
		}
	}
}
