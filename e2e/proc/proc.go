// Package proc starts the project's binaries as real processes for end-to-end tests and stops
// them when the test ends, keeping their output for failures.
package proc

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/testwait"
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
		root := Root()
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

// Root is the checkout this package belongs to: the binaries and tools are built from it.
func Root() string {
	_, self, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(self)))
}

// Proc is a process started by a test and stopped when it ends; its output is kept for failures.
type Proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
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
	p := &Proc{name: filepath.Base(argv[0]), cmd: exec.Command(argv[0], argv[1:]...), out: &syncBuffer{}, done: make(chan struct{})}
	for _, a := range argv {
		// Name the program, not the "ip netns exec" or "env" that runs it.
		if st, err := os.Stat(a); err == nil && filepath.IsAbs(a) && st.Mode()&0o111 != 0 {
			p.name = filepath.Base(a)
			break
		}
	}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.name, Tail(p.out.String(), 8000))
		}
	})
	return p
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Kill ends the process with SIGKILL, with no chance to say goodbye on its connections.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// Stop interrupts the process and waits for it; it kills it after 5 seconds.
func (p *Proc) Stop() {
	if p.Exited() {
		return
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.Kill()
	}
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

// Eventually polls cond (testwait.Eventually).
func Eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	testwait.Eventually(t, what, cond)
}

// EventuallyWithin is Eventually with its own deadline, for waits that a loaded machine
// stretches most, such as a process starting.
func EventuallyWithin(t testing.TB, bound time.Duration, what string, cond func() bool) {
	t.Helper()
	testwait.Within(t, bound, what, cond)
}
