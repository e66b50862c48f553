package brain_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	agentstream "github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

// workSoak agents are a mixed fleet (soakFleet): the first simConfig.Applying are the real agent
// client over a counting dataplane, as workApply, every update decoded and applied port by port
// before its acknowledgement, keeping nothing a node would not keep, so the process's memory over
// hours is the agents' own; the rest are held agents (simheld_test.go), which acknowledge every
// update after recording its names and versions. A thousand real agents applying 100 changes a
// second need more than the two cores they would share with the brain here (measured: 1.5 cores
// for the agents alone, p99 in seconds), where each has a node of its own in a cluster.
const workSoak = "soak"

// soakFleet is the agents of BenchmarkSoak: the applying ones hold their resources through one
// stream.Share, which lets a version go with its last holder, and their dataplanes keep a digest
// of each programmed port only.
type soakFleet struct {
	countingAgents
	held     *heldFleet
	refusals *refusalCounter
	cpu      *os.File // the CPU profile being written, if any
}

// soakPartialPort is the agent's refusal of a port whose service names an endpoint set the agent
// does not hold (nodeagent/stream, held.port): an update that carried part of a port.
const soakPartialPort = "endpoint set its policy names is missing"

// refusalCounter is the agents' logger: it counts the resources they reject ("resource rejected",
// logged by nodeagent/stream with the reason), sorted by why, and drops every other record.
type refusalCounter struct {
	partial, other atomic.Int64
}

var _ slog.Handler = (*refusalCounter)(nil)

func (c *refusalCounter) Enabled(context.Context, slog.Level) bool { return true }

func (c *refusalCounter) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "resource rejected" {
		return nil
	}
	partial := false
	r.Attrs(func(a slog.Attr) bool {
		partial = partial || a.Key == "err" && strings.Contains(a.Value.String(), soakPartialPort)
		return true
	})
	if partial {
		c.partial.Add(1)
	} else {
		c.other.Add(1)
	}
	return nil
}

func (c *refusalCounter) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *refusalCounter) WithGroup(string) slog.Handler      { return c }

func startSoakFleet(cfg simConfig, roots *pki.Pool) (*soakFleet, error) {
	f := &soakFleet{refusals: &refusalCounter{}}
	applying := cfg
	applying.Agents = min(cfg.Applying, cfg.Agents)
	var err error
	if f.countingAgents, err = startCountingAgents(applying, roots, "soak", slog.New(f.refusals), nil); err != nil {
		return nil, err
	}
	if f.held, err = startHeldAgents(cfg, roots, applying.Agents); err != nil {
		return nil, err
	}
	return f, nil
}

// command answers:
//
//	state   "state <node> <resources> <digest> <dataplane>": what each agent holds, as the apply
//	        and held fleets say it (checkSoakHold reads it)
//	refused "refused <partial> <other>": resources the agents rejected, by why
//	rss     "rss <MiB>": the process's settled RSS (settledRSS)
//	heap <file> writes the process's heap profile to file, after a collection
//	cpu <file>  starts the process's CPU profile into file; "cpu stop" ends it
func (f *soakFleet) command(args []string, out io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "state":
		f.writeState(out)
		return f.held.command(args, out)
	case len(args) == 1 && args[0] == "refused":
		fmt.Fprintf(out, "refused %d %d\n", f.refusals.partial.Load(), f.refusals.other.Load())
	case len(args) == 1 && args[0] == "rss":
		mib, err := settledRSS()
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "rss %.1f\n", mib)
	case len(args) == 2 && args[0] == "heap":
		return writeHeapProfile(args[1])
	case len(args) == 2 && args[0] == "cpu":
		return f.cpuProfile(args[1])
	default:
		return fmt.Errorf("unknown command %q", args)
	}
	return nil
}

// cpuProfile starts the process's CPU profile into file, or stops it when file is "stop".
func (f *soakFleet) cpuProfile(file string) error {
	if file == "stop" {
		pprof.StopCPUProfile()
		return f.cpu.Close()
	}
	out, err := os.Create(file)
	if err != nil {
		return fmt.Errorf("cpu profile: %w", err)
	}
	f.cpu = out
	return pprof.StartCPUProfile(out)
}

func (f *soakFleet) stop() {
	for _, a := range f.agents {
		a.halt()
	}
	f.held.stop()
}

// countingDataplane programs ports into a map and counts its applies: the agent's whole path to
// a backend, with a backend that costs little and keeps only a digest of what is programmed.
type countingDataplane struct {
	mu      sync.Mutex
	ports   map[string]uint64 // portDigest by base
	applies atomic.Int64
}

var _ dataplane.Dataplane = (*countingDataplane)(nil)

// Apply programs the change.
func (d *countingDataplane) Apply(_ context.Context, c dataplane.Change) map[string]error {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, p := range c.Upserts {
		d.ports[p.Base] = portDigest(p.Service, p.Cluster, p.Local)
	}
	for _, b := range c.Removals {
		delete(d.ports, b)
	}
	d.applies.Add(1)
	return nil
}

// Prune drops the ports keep does not hold.
func (d *countingDataplane) Prune(_ context.Context, keep map[string]bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	maps.DeleteFunc(d.ports, func(b string, _ uint64) bool { return !keep[b] })
	return nil
}

// Reconcile has nothing to repair.
func (d *countingDataplane) Reconcile(context.Context) error { return nil }

// Close does nothing.
func (d *countingDataplane) Close() error { return nil }

// holds checks that the dataplane programs exactly what the agent holds (see portsMatchHeld).
func (d *countingDataplane) holds(a *agentstream.Agent, held map[string]string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return portsMatchHeld(d.ports, held, a)
}
