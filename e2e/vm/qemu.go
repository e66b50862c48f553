package vm

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Config says what to boot and run.
type Config struct {
	// Binary is a static executable (usually from `go test -c`) run as the guest's test.
	Binary string
	// Args and Env are passed to it.
	Args []string
	Env  map[string]string
	// Modules and Tools default to DefaultModules and DefaultTools.
	Modules []string
	Tools   []string
	// MemoryMB defaults to 1024 and CPUs to 2.
	MemoryMB int
	CPUs     int
	// Timeout bounds the whole boot and run; it defaults to 5 minutes.
	Timeout time.Duration
	// Console, when set, receives every console line as it arrives.
	Console io.Writer
}

// Result is what came back from the guest.
type Result struct {
	// ExitCode is the test binary's exit status as the guest reported it.
	ExitCode int
	// Log is the whole serial console output.
	Log string
	// Elapsed is the wall time from starting qemu to its exit.
	Elapsed time.Duration
}

// ErrNoResult means the guest stopped (or timed out) without reporting a result.
var ErrNoResult = errors.New("vm: guest reported no result")

var resultRe = regexp.MustCompile(`GANGLION-VM-RESULT rc=(\d+)`)

// Prepare installs the host packages and fetches the kernel; Run calls it, but tests may call it
// first to tell a missing prerequisite from a failing test.
func Prepare(ctx context.Context) (*Kernel, error) {
	// Test packages run in parallel: one of them prepares, the others wait and find it done.
	if err := os.MkdirAll(CacheDir(), 0o755); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	unlock, err := lockDir(CacheDir())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := EnsureHostPackages(ctx); err != nil {
		return nil, err
	}
	return EnsureKernel(ctx)
}

// Run boots a VM, runs cfg.Binary in it and returns its result. A non-nil error means the VM
// could not be prepared or reported nothing; a failing test is a Result with a non-zero ExitCode.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Minute
	}
	if cfg.MemoryMB == 0 {
		cfg.MemoryMB = 1024
	}
	if cfg.CPUs == 0 {
		cfg.CPUs = 2
	}
	if cfg.Modules == nil {
		cfg.Modules = DefaultModules
	}
	if cfg.Tools == nil {
		cfg.Tools = DefaultTools
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	k, err := Prepare(ctx)
	if err != nil {
		return nil, err
	}
	initrd, cleanup, err := buildInitrd(k, cfg)
	if err != nil {
		return nil, err
	}
	defer cleanup()

	cmd := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-cpu", "max", "-m", strconv.Itoa(cfg.MemoryMB), "-smp", strconv.Itoa(cfg.CPUs),
		"-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio", "-display", "none",
		"-kernel", k.Vmlinuz, "-initrd", initrd,
		"-append", "console=ttyS0 quiet panic=-1 loglevel=3")
	cmd.Stdin = nil
	cmd.WaitDelay = 5 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("vm: starting qemu: %w", err)
	}
	var log strings.Builder
	rc := -1
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64*1024), 4*1024*1024)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		log.WriteString(line + "\n")
		if cfg.Console != nil {
			fmt.Fprintln(cfg.Console, line)
		}
		if m := resultRe.FindStringSubmatch(line); m != nil {
			rc, _ = strconv.Atoi(m[1])
		}
	}
	werr := cmd.Wait()
	res := &Result{ExitCode: rc, Log: log.String(), Elapsed: time.Since(start)}
	if rc < 0 {
		why := "qemu exited"
		if ctx.Err() != nil {
			why = fmt.Sprintf("timed out after %s", cfg.Timeout)
		}
		return res, fmt.Errorf("%w: %s (%v); qemu stderr: %s", ErrNoResult, why, werr, tail(stderr.Bytes(), 2000))
	}
	return res, nil
}

// buildInitrd writes the cached base image followed by this run's archive into one temp file.
func buildInitrd(k *Kernel, cfg Config) (string, func(), error) {
	dir := filepath.Join(CacheDir(), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", nil, fmt.Errorf("image dir: %w", err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", nil, err
	}
	base, err := baseImage(k, cfg.Modules, cfg.Tools)
	unlock()
	if err != nil {
		return "", nil, err
	}
	run, err := runImage(cfg.Binary, cfg.Args, cfg.Env)
	if err != nil {
		return "", nil, err
	}
	baseData, err := os.ReadFile(base)
	if err != nil {
		return "", nil, fmt.Errorf("base image: %w", err)
	}
	f, err := os.CreateTemp("", "ganglion-vm-initrd-*")
	if err != nil {
		return "", nil, fmt.Errorf("initrd: %w", err)
	}
	cleanup := func() { os.Remove(f.Name()) }
	// The kernel expects each appended archive to start on a 4-byte boundary; gzip output has no
	// such alignment, so pad with zeros, which the unpacker skips.
	pad := make([]byte, (512-len(baseData)%512)%512)
	for _, b := range [][]byte{baseData, pad, run} {
		if _, err := f.Write(b); err != nil {
			f.Close()
			cleanup()
			return "", nil, fmt.Errorf("initrd: %w", err)
		}
	}
	if err := f.Close(); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("initrd: %w", err)
	}
	return f.Name(), cleanup, nil
}
