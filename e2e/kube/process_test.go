package kube

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// process is a child the test may kill outright (e2e/proc only interrupts): a brain replica
// that dies without closing its streams is the failover this package must survive.
type process struct {
	name string
	cmd  *exec.Cmd
	out  lockedBuffer
	done chan struct{}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// start runs argv and stops it when t ends; its output is logged when t failed.
func start(t *testing.T, argv ...string) *process {
	t.Helper()
	p := &process{name: filepath.Base(argv[len(argv)-1]), cmd: exec.Command(argv[0], argv[1:]...), done: make(chan struct{})}
	for _, a := range argv {
		if st, err := os.Stat(a); err == nil && filepath.IsAbs(a) && st.Mode()&0o111 != 0 {
			p.name = filepath.Base(a) // the binary, not "ip netns exec"
			break
		}
	}
	p.cmd.Stdout, p.cmd.Stderr = &p.out, &p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.name, tail(p.out.String(), 8000))
		}
	})
	return p
}

// kill ends the process with SIGKILL: no goodbye on its streams.
func (p *process) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop interrupts the process and kills it if it has not exited 5 seconds later.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		p.kill()
	}
}

// exited reports whether the process has ended.
func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
