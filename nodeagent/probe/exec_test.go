package probe_test

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	"github.com/ganglion-proxy/ganglion/nodeagent/probe"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// script writes an executable /bin/sh script named name into dir and returns its path.
func script(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func execCheck(command ...string) *v1.HealthCheck {
	return &v1.HealthCheck{Action: &v1.HealthCheck_Exec{Exec: &v1.ExecAction{Command: command}},
		PeriodSeconds: 1, FailureThreshold: 3}
}

// TestExecNotAllowedNeverRuns checks that an exec check whose first word is not exactly an
// allowed path never runs (the marker its script would create never appears), fails, and is
// logged once with the reason.
func TestExecNotAllowedNeverRuns(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	check := script(t, dir, "check", "touch "+marker+"\n")
	other := script(t, dir, "other", "exit 0\n")
	for _, tc := range []struct {
		name    string
		allow   []string
		command []string
	}{
		{name: "exec off by default", command: []string{check}},
		{name: "another command allowed", allow: []string{other}, command: []string{check}},
		{name: "relative name", allow: []string{check}, command: []string{"check"}},
		{name: "unclean alias", allow: []string{check}, command: []string{dir + "/./check"}},
		{name: "double slash alias", allow: []string{check}, command: []string{dir + "//check"}},
		{name: "allowed path as an argument", allow: []string{other}, command: []string{"/bin/sh", check}},
		{name: "a shell in the allowlist is dropped", allow: []string{"/bin/sh"}, command: []string{"/bin/sh", check}},
		{name: "empty command", allow: []string{check}, command: nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &reports{}
			logs := startProber(t, r, probe.Options{ExecAllow: tc.allow}, execCheck(tc.command...), "127.0.0.1", 8080)
			testwait.Eventually(t, "not ready", func() bool { return r.count() >= 1 })
			if got := r.list(); got[0].ready {
				t.Fatalf("reports %v, want not ready", got)
			}
			if _, err := os.Stat(marker); !os.IsNotExist(err) {
				t.Fatalf("the refused command ran: %s exists (%v)", marker, err)
			}
			if n := strings.Count(logs.String(), "health check refused"); n != 1 {
				t.Errorf("refusal logged %d times over 3 periods, want once:\n%s", n, logs)
			}
		})
	}
}

// TestExecAllowedRunsWithMinimalEnvironment checks that an allowed command runs with its
// arguments, in /, with nothing on stdin, and with only PATH and the endpoint in its environment:
// nothing of the agent's environment reaches it.
func TestExecAllowedRunsWithMinimalEnvironment(t *testing.T) {
	t.Setenv("GANGLION_PROBE_TEST_SECRET", "agent-only")
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	check := script(t, dir, "check",
		`{ env; echo "ARG1=$1"; echo "STDIN=$(cat)"; } > "`+out+`.tmp" && mv "`+out+`.tmp" "`+out+`"`+"\n")
	r := &reports{}
	startProber(t, r, probe.Options{ExecAllow: []string{check}}, execCheck(check, "first arg"), "127.0.0.1", 8080)
	var lines []string
	testwait.Eventually(t, "the check's output", func() bool {
		b, err := os.ReadFile(out)
		lines = strings.Split(strings.TrimSpace(string(b)), "\n")
		return err == nil
	})
	for _, want := range []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "PROBE_ADDRESS=127.0.0.1",
		"PROBE_PORT=8080", "PWD=/", "ARG1=first arg", "STDIN="} {
		if !slices.Contains(lines, want) {
			t.Errorf("the check saw no %q in:\n%s", want, strings.Join(lines, "\n"))
		}
	}
	// The shell running the script may add its own variables; nothing else may appear.
	shellOwn := map[string]bool{"PWD": true, "OLDPWD": true, "SHLVL": true, "_": true}
	for _, l := range lines {
		name, _, _ := strings.Cut(l, "=")
		switch {
		case name == "GANGLION_PROBE_TEST_SECRET":
			t.Errorf("the agent's environment leaked into the check: %s", l)
		case name == "PATH" || name == "PROBE_ADDRESS" || name == "PROBE_PORT" || name == "ARG1" || name == "STDIN" || shellOwn[name]:
		default:
			t.Errorf("unexpected variable in the check's environment: %s", l)
		}
	}
	if got := r.list(); len(got) != 0 {
		t.Errorf("reports %v, want none: the check passes", got)
	}
}

// TestExecKillsTheWholeProcessGroup checks that a check that outlives its timeout is killed with
// every process it started, and that a passing check's leftover children do not outlive it.
func TestExecKillsTheWholeProcessGroup(t *testing.T) {
	for _, tc := range []struct {
		name, tail string
		wantReport bool
	}{
		{name: "timeout", tail: "wait\n", wantReport: true},
		{name: "pass leaves a child", tail: "exit 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			pids := filepath.Join(dir, "pids")
			check := script(t, dir, "check", `sleep 300 &
echo "$$ $!" > "`+pids+`.tmp" && mv "`+pids+`.tmp" "`+pids+`"
`+tc.tail)
			hc := execCheck(check)
			hc.TimeoutSeconds, hc.FailureThreshold = 1, 1
			r := &reports{}
			startProber(t, r, probe.Options{ExecAllow: []string{check}}, hc, "127.0.0.1", 8080)
			var started []int
			testwait.Eventually(t, "the check's pids", func() bool {
				b, err := os.ReadFile(pids)
				if err != nil {
					return false
				}
				started = nil
				for _, f := range strings.Fields(string(b)) {
					n, _ := strconv.Atoi(f)
					started = append(started, n)
				}
				return len(started) == 2
			})
			if tc.wantReport {
				testwait.Eventually(t, "not ready", func() bool { return r.count() >= 1 })
			}
			for _, pid := range started {
				testwait.Eventually(t, "pid "+strconv.Itoa(pid)+" gone", func() bool { return !running(pid) })
			}
			if got := r.count() > 0; got != tc.wantReport {
				t.Errorf("reports %v, want a not-ready report: %v", r.list(), tc.wantReport)
			}
		})
	}
}

// running says whether pid is a live process; a zombie has been killed, whoever reaps it.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) state ...: comm may hold spaces, the state follows its closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// TestExecRunsAsTheGivenUser checks that an allowed command runs as the agent's --exec-user
// (nobody by default), not as the root agent.
func TestExecRunsAsTheGivenUser(t *testing.T) {
	testenv.RequireRoot(t)
	dir, err := os.MkdirTemp("", "probe-user-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "id")
	check := script(t, dir, "check", `echo "$(id -u):$(id -g)" > "`+out+`"`+"\n")
	startProber(t, &reports{}, probe.Options{ExecAllow: []string{check},
		ExecCredential: &syscall.Credential{Uid: 65534, Gid: 65534}}, execCheck(check), "127.0.0.1", 8080)
	var got string
	testwait.Eventually(t, "the check's id", func() bool {
		b, err := os.ReadFile(out)
		got = strings.TrimSpace(string(b))
		return err == nil && got != ""
	})
	if got != "65534:65534" {
		t.Errorf("the check ran as %s, want 65534:65534", got)
	}
}
