package brain_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// simFleet is a child process of simulated agents (runSimAgents): a thousand agents in the
// brain's own process would share its scheduler and heap and blur what is measured.
type simFleet struct {
	cmd   *exec.Cmd
	stdin io.Closer
	once  sync.Once

	kick chan struct{} // a report arrived, or the child's output ended
	mu   sync.Mutex
	last map[string]simReport // each agent's latest report
	at   map[int]time.Time    // snapshots -> when the last agent reported that many
	done bool                 // the child's output ended
}

// simReport is an agent's line on a completed snapshot.
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
	f := &simFleet{kick: make(chan struct{}, 1), last: map[string]simReport{}, at: map[int]time.Time{}}
	f.cmd = exec.Command(os.Args[0], "-test.run=^$")
	f.cmd.Env = append(os.Environ(), envSimAgents+"="+string(spec))
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
// no polling.
func (f *simFleet) read(out io.Reader, agents int) {
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var node string
		var r simReport
		if _, err := fmt.Sscanf(sc.Text(), "synced %s %d %d %d", &node, &r.snapshots, &r.received, &r.held); err != nil {
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
	f.signal()
}

func (f *simFleet) signal() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
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
