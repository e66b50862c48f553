package vm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
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
	// Expect names the tests that must pass in the guest. Empty means every test the binary
	// lists for Run (`-test.list`, on the host, before booting): Args must then not deselect
	// any (no -test.skip), or the run fails for tests that never ran.
	Expect []string
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

// RunGoTest builds g's package, runs it in a fresh VM and fails t with the guest's log unless
// every expected test passed and none failed or skipped (see GuestTests.Check). A missing
// prerequisite (not root, no package, no kernel) skips t, or fails it when CI is set. It returns
// the guest's result for callers that parse its output.
func RunGoTest(t testing.TB, g GoTest) *Result {
	t.Helper()
	testenv.RequireRoot(t)
	ctx := context.Background()
	if _, err := Prepare(ctx); err != nil {
		testenv.Require(t, false, "VM prerequisites: "+err.Error())
	}
	res, err := runGoTest(ctx, g, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest tests passed in %s (boot included)", res.Elapsed.Round(time.Second))
	if testing.Verbose() {
		t.Logf("guest console:\n%s", res.Log)
	}
	return res
}

// runGoTest is RunGoTest with its verdict returned, so a test can show the harness fails.
func runGoTest(ctx context.Context, g GoTest, tmp string) (*Result, error) {
	dir, err := filepath.Abs(g.Package)
	if err != nil {
		return nil, err
	}
	bin := filepath.Join(tmp, "guest.test")
	if err := BuildTest(ctx, dir, bin); err != nil {
		return nil, err
	}
	expect := g.Expect
	if len(expect) == 0 {
		if expect, err = ListTests(ctx, bin, dir, g.Run); err != nil {
			return nil, err
		}
		if len(expect) == 0 {
			return nil, fmt.Errorf("%w: -test.run %q matches no test of %s", ErrGuestTests, g.Run, dir)
		}
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
		return res, fmt.Errorf("%w\nguest console:\n%s", err, log)
	}
	if res.ExitCode != 0 {
		return res, fmt.Errorf("guest tests failed (rc=%d) after %s; guest console:\n%s", res.ExitCode, res.Elapsed.Round(time.Second), res.Log)
	}
	if err := ParseGuestTests(res.Log).Check(expect); err != nil {
		return res, fmt.Errorf("%w\nguest console:\n%s", err, res.Log)
	}
	return res, nil
}

// ListTests asks the test binary bin (run on the host in dir) which tests -test.run pattern
// selects. Benchmarks and examples are left out: -test.run runs no benchmark, and an example
// without output is listed but never run.
func ListTests(ctx context.Context, bin, dir, pattern string) ([]string, error) {
	if pattern == "" {
		pattern = "."
	}
	cmd := exec.CommandContext(ctx, bin, "-test.list", pattern)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -test.list %q: %w", bin, pattern, err)
	}
	var names []string
	// One name a line; anything else (a TestMain that talks) is not a name.
	for _, l := range strings.Split(string(out), "\n") {
		if strings.ContainsAny(l, " \t") {
			continue
		}
		if strings.HasPrefix(l, "Test") || strings.HasPrefix(l, "Fuzz") {
			names = append(names, l)
		}
	}
	return names, nil
}
