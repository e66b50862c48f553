package probe

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// execPath is the whole search path an exec check gets: the agent's own environment (proxies,
// credentials, whatever its unit sets) is none of the check's business.
const execPath = "PATH=/usr/sbin:/usr/bin:/sbin:/bin"

// execChecker returns a checker that runs command when its first word is exactly an allowed path.
// The command runs without a shell, with nothing on stdin, its output discarded, a minimal
// environment, in / and in its own process group, so that a timeout kills whatever it started.
func (p *Prober) execChecker(command []string, addr string, port uint32) (checker, error) {
	if len(command) == 0 {
		return nil, fmt.Errorf("%w: empty command", ErrExecNotAllowed)
	}
	if !p.execAllow[command[0]] {
		return nil, fmt.Errorf("%w: %q", ErrExecNotAllowed, command[0])
	}
	env := []string{execPath, "PROBE_ADDRESS=" + addr, "PROBE_PORT=" + strconv.Itoa(int(port))}
	return func(ctx context.Context) error {
		return runExec(ctx, command, env, p.execCred)
	}, nil
}

// runExec runs command until it exits or ctx ends, then kills what is left of its process group:
// a check that forks a child must not leave it running past its timeout, nor after it passes.
func runExec(ctx context.Context, command, env []string, cred *syscall.Credential) error {
	cmd := exec.CommandContext(ctx, command[0], command[1:]...)
	cmd.Env = env
	cmd.Dir = "/"
	// Stdin, Stdout and Stderr stay nil: /dev/null, so nothing the check prints is kept or waited on.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	cmd.Cancel = func() error { return killGroup(cmd) }
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("exec check %s: %w", command[0], err)
	}
	// Until Wait reaps it the exited leader keeps its pid, which is the group's id, so no other
	// process can have taken that id yet: the kill reaches only what the check left behind.
	waitExited(cmd.Process.Pid)
	_ = killGroup(cmd)
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("exec check %s: %w", command[0], err)
	}
	return nil
}

// killGroup sends SIGKILL to the command's whole process group (its pid, since Setpgid).
func killGroup(cmd *exec.Cmd) error {
	if cmd.Process == nil {
		return errors.New("exec check not started")
	}
	return unix.Kill(-cmd.Process.Pid, unix.SIGKILL)
}

// waitExited blocks until pid has exited, without reaping it.
func waitExited(pid int) {
	var info unix.Siginfo
	for {
		if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil); !errors.Is(err, unix.EINTR) {
			return
		}
	}
}
