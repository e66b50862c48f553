// Package testenv decides what a test does when a real part it needs is missing: skip with the
// reason when run by hand, fail when CI is set, because a skipped real-kernel test is not a pass.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the CI environment variable is set.
func InCI() bool { return os.Getenv("CI") != "" }

// Require skips t (or fails it in CI) with reason unless ok.
func Require(t testing.TB, ok bool, reason string) {
	t.Helper()
	if ok {
		return
	}
	if InCI() {
		t.Fatalf("prerequisite missing in CI: %s", reason)
	}
	t.Skipf("prerequisite missing: %s", reason)
}

// RequireRoot needs uid 0, for network namespaces and netlink.
func RequireRoot(t testing.TB) {
	t.Helper()
	Require(t, os.Geteuid() == 0, "must run as root")
}

// RequireCommand needs an executable on PATH and returns its path.
func RequireCommand(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	Require(t, err == nil, name+" not found on PATH")
	return p
}
