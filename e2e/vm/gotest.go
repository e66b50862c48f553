package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// insideEnv is set in the guest so the same test binary can tell where it runs.
const insideEnv = "GANGLION_IN_VM"

// Inside reports whether this process is the test binary running in the guest.
func Inside() bool { return os.Getenv(insideEnv) == "1" }

// RequireInside skips a guest-only test on the host: it is not a missing prerequisite, the outer
// test boots the VM and runs it there.
func RequireInside(t testing.TB) {
	t.Helper()
	if !Inside() {
		t.Skip("runs inside the VM; the outer test boots it")
	}
}

// GoTest says which tests of a package to run in the guest.
type GoTest struct {
	// Package is the directory of the package to build, relative to the caller's directory;
	// empty means the caller's own package.
	Package string
	// Run and Bench are the -test.run and -test.bench patterns.
	Run, Bench string
	// Args are extra flags for the test binary.
	Args []string
	// Env is set in the guest besides the marker the guest tests look for.
	Env map[string]string
	// Timeout bounds the VM run (default 5 minutes).
	Timeout time.Duration
}

// BuildTest compiles the test binary of the package in dir statically, so it runs in the guest
// without a libc.
func BuildTest(ctx context.Context, dir, out string) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go test -c in %s: %w: %s", dir, err, b)
	}
	return nil
}

var failRe = regexp.MustCompile(`(?m)^\s*--- (FAIL|SKIP): .*$`)

// RunGoTest builds g's package, runs it in a fresh VM and fails t with the guest's log when the
// guest's tests fail. A missing prerequisite (not root, no package, no kernel) skips t, or fails
// it when CI is set. It returns the guest's result for callers that parse its output.
func RunGoTest(t testing.TB, g GoTest) *Result {
	t.Helper()
	testenv.RequireRoot(t)
	ctx := context.Background()
	if _, err := Prepare(ctx); err != nil {
		testenv.Require(t, false, "VM prerequisites: "+err.Error())
	}
	dir, err := filepath.Abs(g.Package)
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "guest.test")
	if err := BuildTest(ctx, dir, bin); err != nil {
		t.Fatal(err)
	}
	args := []string{"-test.v", "-test.count=1"}
	if g.Run != "" {
		args = append(args, "-test.run", g.Run)
	}
	if g.Bench != "" {
		args = append(args, "-test.bench", g.Bench, "-test.benchtime", "1x")
	}
	args = append(args, g.Args...)
	env := map[string]string{insideEnv: "1"}
	if testenv.InCI() {
		env["CI"] = os.Getenv("CI")
	}
	for k, v := range g.Env {
		env[k] = v
	}
	cfg := Config{Binary: bin, Args: args, Env: env, Timeout: g.Timeout}
	if os.Getenv("GANGLION_VM_CONSOLE") != "" {
		cfg.Console = os.Stderr
	}
	res, err := Run(ctx, cfg)
	if err != nil {
		log := ""
		if res != nil {
			log = res.Log
		}
		t.Fatalf("%v\nguest console:\n%s", err, log)
	}
	if res.ExitCode != 0 {
		t.Fatalf("guest tests failed (rc=%d) after %s; guest console:\n%s", res.ExitCode, res.Elapsed.Round(time.Second), res.Log)
	}
	for _, l := range failRe.FindAllString(res.Log, -1) {
		t.Log("guest: " + strings.TrimSpace(l))
	}
	t.Logf("guest tests passed in %s (boot included)", res.Elapsed.Round(time.Second))
	if testing.Verbose() {
		t.Logf("guest console:\n%s", res.Log)
	}
	return res
}
