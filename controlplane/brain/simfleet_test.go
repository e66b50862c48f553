package brain_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// simFleet is a child process of simulated agents (runSimAgents): a thousand agents in the
// brain's own process would share its scheduler and heap, and their CPU would count as the
// brain's.
type simFleet struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	once  sync.Once
	// replies carries the child's lines other than snapshot reports: answers to commands.
	replies chan string

	kick chan struct{} // a report arrived, or the child's output ended
	mu   sync.Mutex
	last map[string]simReport // each agent's latest report
	at   map[int]time.Time    // snapshots -> when the last agent reported that many
	done bool                 // the child's output ended
}

// simReport is a held agent's line on a completed snapshot.
type simReport struct {
	snapshots, received, held int
}

// startFleet starts the agents of cfg; they run until stop.
func startFleet(b *testing.B, cfg simConfig) *simFleet {
	b.Helper()
	spec, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	f := &simFleet{kick: make(chan struct{}, 1), replies: make(chan string, 4*cfg.Agents),
		last: map[string]simReport{}, at: map[int]time.Time{}}
	f.cmd = exec.Command(os.Args[0], "-test.run=^$")
	f.cmd.Env = append(os.Environ(), envSimAgents+"="+string(spec))
	if cfg.GOGC != 0 {
		f.cmd.Env = append(f.cmd.Env, "GOGC="+strconv.Itoa(cfg.GOGC))
	}
	f.cmd.Stderr = os.Stderr
	if f.stdin, err = f.cmd.StdinPipe(); err != nil {
		b.Fatal(err)
	}
	out, err := f.cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := f.cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.stop)
	go f.read(out, cfg.Agents)
	return f
}

// read records the agents' reports as they come, so waiting for them costs the brain's process
// no polling, and passes every other line on to command.
func (f *simFleet) read(out io.Reader, agents int) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var node string
		var r simReport
		if _, err := fmt.Sscanf(sc.Text(), "synced %s %d %d %d", &node, &r.snapshots, &r.received, &r.held); err != nil {
			f.replies <- sc.Text()
			continue
		}
		f.mu.Lock()
		f.last[node] = r
		if _, seen := f.at[r.snapshots]; !seen && f.count(r.snapshots) == agents {
			f.at[r.snapshots] = time.Now()
		}
		f.mu.Unlock()
		f.signal()
	}
	f.mu.Lock()
	f.done = true
	f.mu.Unlock()
	close(f.replies)
	f.signal()
}

func (f *simFleet) signal() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// command sends one command to the agents' process and returns its answer's lines, split in
// fields.
func (f *simFleet) command(b *testing.B, args ...string) [][]string {
	b.Helper()
	if _, err := fmt.Fprintln(f.stdin, strings.Join(args, " ")); err != nil {
		b.Fatalf("simulated agents: %v", err)
	}
	var lines [][]string
	timeout := time.After(5 * time.Minute)
	for {
		select {
		case line, ok := <-f.replies:
			switch {
			case !ok:
				b.Fatalf("simulated agents exited during %q", args)
			case line == "ok":
				return lines
			case strings.HasPrefix(line, "error "):
				b.Fatalf("simulated agents: %q: %s", args, line)
			}
			lines = append(lines, strings.Fields(line))
		case <-timeout:
			b.Fatalf("simulated agents did not answer %q", args)
		}
	}
}

// wire is each agent's bytes on the wire so far, by node.
func (f *simFleet) wire(b *testing.B) map[string]int64 {
	b.Helper()
	out := map[string]int64{}
	for _, l := range f.command(b, "bytes") {
		n, err := strconv.ParseInt(l[2], 10, 64)
		if l[0] != "bytes" || err != nil {
			b.Fatalf("simulated agents: bad bytes line %q", l)
		}
		out[l[1]] = n
	}
	return out
}

// count is how many agents have completed n snapshots or more; f.mu is held.
func (f *simFleet) count(n int) int {
	c := 0
	for _, r := range f.last {
		if r.snapshots >= n {
			c++
		}
	}
	return c
}

// waitSnapshots waits until every agent has completed n snapshots and returns when the last one
// reported it, and every agent's latest report.
func (f *simFleet) waitSnapshots(b *testing.B, n int, timeout time.Duration) (time.Time, map[string]simReport) {
	b.Helper()
	deadline := time.After(timeout)
	for {
		f.mu.Lock()
		at, ok := f.at[n]
		done, reports := f.done, map[string]simReport(nil)
		if ok {
			reports = maps.Clone(f.last)
		}
		f.mu.Unlock()
		switch {
		case ok:
			return at, reports
		case done:
			b.Fatalf("the simulated agents exited before all completed snapshot %d", n)
		}
		select {
		case <-f.kick:
		case <-deadline:
			b.Fatalf("timed out waiting for every agent's snapshot %d", n)
		}
	}
}

// stop ends the agents and waits for their process.
func (f *simFleet) stop() {
	f.once.Do(func() {
		f.stdin.Close()
		_ = f.cmd.Wait()
	})
}

// cpu is the CPU time the agents' process has used so far.
func (f *simFleet) cpu(b *testing.B) time.Duration {
	b.Helper()
	return cpuTime(b, strconv.Itoa(f.cmd.Process.Pid))
}

// cpuTime is the user and system CPU time of a process so far ("self" for this one), from
// /proc/<pid>/stat in clock ticks of 10 ms (USER_HZ, 100 on Linux).
func cpuTime(b *testing.B, pid string) time.Duration {
	b.Helper()
	raw, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		b.Fatal(err)
	}
	// The command name, in parentheses, may hold spaces: fields count from after it.
	f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+1:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		b.Fatalf("/proc/%s/stat: %q", pid, raw)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond
}
