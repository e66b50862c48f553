// Package proc starts the project's binaries as real processes for end-to-end tests and stops
// them when the test ends, keeping their output for failures.
package proc

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"
)

// binDir holds the binaries built once per test process.
var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Binaries builds ganglion-controlplane, ganglionctl and ganglion-agent from this checkout, once, and returns
// the directory that holds them.
func Binaries(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		// One directory per test package (tests run with the package as working directory), reused
		// across runs: nothing piles up in /tmp, and packages testing in parallel never write the
		// same file.
		wd, _ := os.Getwd()
		binDir = filepath.Join(os.TempDir(), "ganglion-e2e-bin-"+filepath.Base(wd))
		if buildErr = os.MkdirAll(binDir, 0o755); buildErr != nil {
			return
		}
		_, self, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(filepath.Dir(self)))
		for _, cmd := range []string{"controlplane/cmd/ganglion-controlplane", "controlplane/cmd/ganglionctl", "nodeagent/cmd/ganglion-agent"} {
			b := exec.Command("go", "build", "-o", binDir, "./"+cmd)
			b.Dir = root
			if out, err := b.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Proc is a process started by a test and stopped when it ends; its output is kept for failures.
type Proc struct {
	cmd *exec.Cmd
	out *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Start starts argv and stops it (SIGINT, then SIGKILL) when t ends.
func Start(t testing.TB, argv ...string) *Proc {
	t.Helper()
	name, args := argv[0], argv[1:]
	p := &Proc{cmd: exec.Command(name, args...), out: &syncBuffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", filepath.Base(name), p.out)
		}
	})
	return p
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Stop interrupts the process and waits for it; it kills it after 5 seconds.
func (p *Proc) Stop() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
	}
}

// Eventually polls cond; the deadline guards against hangs, it is not a performance assertion.
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for: %s", what)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
