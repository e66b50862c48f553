package brain_test

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/internal/digest"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// envSimAgents carries a simConfig, as JSON: this process runs simulated agents.
const envSimAgents = "GANGLION_SIM_AGENTS"

// simConfig is what a benchmark tells its process of simulated agents.
type simConfig struct {
	Addr   string
	Agents int
	// PKIDir holds the CA and each agent's node certificate, as newBenchPKI wrote them.
	PKIDir string
	// Work is what the agents do with what they are sent: workApply, workHeld, workSoak or
	// workFloor.
	Work string
	// Applying is, for workSoak, how many of the agents (the first) are real agents applying
	// every update; the others are held agents.
	Applying int
	// GOGC, when not zero, is the process's GOGC.
	GOGC int
}

const (
	// workApply agents are the real agent client over the recording dataplane (simapply_test.go):
	// each update decoded and applied before its acknowledgement.
	workApply = "apply"
	// workHeld agents keep names and versions only, undecoded, and resume from them (simheld_test.go):
	// a reconnect storm measures the brain, not a thousand agents' decoding on its two cores.
	workHeld = "held"
)

// agentClient names the gRPC client of agents doing work, for the BENCH lines: the real agent's
// (grpc-go) or the held agents' own (simh2_test.go).
func agentClient(work string) string {
	if work == workHeld {
		return "h2framer"
	}
	return "grpc"
}

// The reconnect backoff of nodeagent/stream's defaults (Config.BackoffMin, BackoffMax), so a
// storm of simulated agents comes back as a fleet of real ones would.
const (
	simBackoffMin = 200 * time.Millisecond
	simBackoffMax = 10 * time.Second
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envSimAgents); spec != "" {
		var cfg simConfig
		if err := json.Unmarshal([]byte(spec), &cfg); err != nil {
			fmt.Fprintln(os.Stderr, envSimAgents, err)
			os.Exit(2)
		}
		os.Exit(runSimAgents(cfg))
	}
	os.Exit(m.Run())
}

func raiseFileLimit() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < 65536 {
		l.Cur, l.Max = 65536, max(l.Max, 65536)
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}

func simNode(i int) string { return fmt.Sprintf("node-%04d", i) }

// simFleetWork is a child's agents: they run from their start until stop; command answers the
// benchmark's requests (lines on stdin) with lines on out.
type simFleetWork interface {
	command(args []string, out io.Writer) error
	stop()
}

// runSimAgents runs cfg.Agents simulated agents and answers the benchmark's commands, one a line,
// each answered by its lines and then "ok" (or "error ..."), until stdin closes.
func runSimAgents(cfg simConfig) int {
	raiseFileLimit()
	roots, err := pki.LoadPool(filepath.Join(cfg.PKIDir, pki.CACert))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	var work simFleetWork
	switch cfg.Work {
	case workApply:
		work, err = startApplyFleet(cfg, roots)
	case workHeld:
		work, err = startHeldFleet(cfg, roots)
	case workSoak:
		work, err = startSoakFleet(cfg, roots)
	case workFloor:
		work, err = startFloorFleet(cfg, roots)
	default:
		err = fmt.Errorf("unknown work %q", cfg.Work)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if err := work.command(strings.Fields(in.Text()), out); err != nil {
			fmt.Fprintln(out, "error", err)
		} else {
			fmt.Fprintln(out, "ok")
		}
		out.Flush()
	}
	work.stop()
	return 0
}

// heldFleet is the agents of BenchmarkTLSReconnect and BenchmarkFanout5000.
type heldFleet struct {
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	errs   *errorTally
	agents []*simAgent
	wire   []*wireMeter
	halts  []func() // each agent's stop, which returns once its connection is closed
}

func startHeldFleet(cfg simConfig, roots *pki.Pool) (*heldFleet, error) {
	return startHeldAgents(cfg, roots, 0)
}

// startHeldAgents starts held agents for the nodes from first up to cfg.Agents.
func startHeldAgents(cfg simConfig, roots *pki.Pool, first int) (*heldFleet, error) {
	f := &heldFleet{errs: &errorTally{seen: map[string]int{}}}
	names := newNameTable()
	f.ctx, f.cancel = context.WithCancel(context.Background())
	for i := first; i < cfg.Agents; i++ {
		node := simNode(i)
		tlsConf, err := nodeTLS(cfg.PKIDir, node, roots, cfg.Addr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", node, err)
		}
		m := &wireMeter{}
		f.agents = append(f.agents, &simAgent{node: node, addr: cfg.Addr, tls: tlsConf, dial: m.dial, errs: f.errs, state: newSimHeld(names)})
		f.wire = append(f.wire, m)
		f.halts = append(f.halts, nil)
		f.start(len(f.agents) - 1)
	}
	return f, nil
}

// start runs agent i until it is halted or the fleet stops.
func (f *heldFleet) start(i int) {
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan struct{})
	f.halts[i] = func() { cancel(); <-done }
	f.wg.Go(func() {
		defer close(done)
		f.agents[i].run(ctx)
	})
}

// noDataplane is what a held agent says of its dataplane in a state line: it has none.
const noDataplane = "-"

// command answers as applyFleet's (bytes, state, halt, start); a held agent's state line says
// noDataplane where an applying agent checks its dataplane.
func (f *heldFleet) command(args []string, out io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "bytes":
		for i, a := range f.agents {
			fmt.Fprintf(out, "bytes %s %d\n", a.node, f.wire[i].bytes.Load())
		}
	case len(args) == 1 && args[0] == "state":
		for _, a := range f.agents {
			n, sum := a.heldSum()
			fmt.Fprintf(out, "state %s %d %d %s\n", a.node, n, sum, noDataplane)
		}
	case len(args) == 3 && (args[0] == "halt" || args[0] == "start"):
		from, err1 := strconv.Atoi(args[1])
		to, err2 := strconv.Atoi(args[2])
		if err1 != nil || err2 != nil || from < 0 || to > len(f.agents) || from > to {
			return fmt.Errorf("bad range %q", args[1:])
		}
		for i := from; i < to; i++ {
			if args[0] == "halt" {
				f.halts[i]()
			} else {
				f.start(i)
			}
		}
	default:
		return fmt.Errorf("unknown command %q", args)
	}
	return nil
}

// stop ends the agents and sums up their session errors on stderr, as a storm makes a thousand
// of each.
func (f *heldFleet) stop() {
	f.cancel()
	f.wg.Wait()
	f.errs.print()
}

// simAgent is one simulated agent: sessions to one brain, with the production backoff between.
type simAgent struct {
	node  string
	addr  string
	tls   *tls.Config
	dial  func(context.Context, string) (net.Conn, error)
	errs  *errorTally
	syncs int // snapshots completed
	// reports receives a line per completed snapshot: the benchmark reads the child's stdout (nil).
	reports io.Writer
	// mu guards state: the session's goroutine applies, a state command reads.
	mu    sync.Mutex
	state *simHeld
}

// heldSum is how many resources the agent holds and their one-bucket digest.
func (a *simAgent) heldSum() (int, uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	set := digest.New(1)
	a.state.each(set.Add)
	return len(a.state.held), set[0]
}

func (a *simAgent) run(ctx context.Context) {
	backoff := simBackoffMin
	for {
		start := time.Now()
		err := a.session(ctx)
		if ctx.Err() != nil {
			return
		}
		a.errs.add(err)
		if time.Since(start) > time.Minute {
			backoff = simBackoffMin
		}
		wait := time.Duration(rand.Int64N(int64(backoff))) + simBackoffMin/2
		backoff = min(2*backoff, simBackoffMax)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return
		}
	}
}

// session runs one stream on a connection of its own, so every session is a new TLS handshake,
// as with the real agent. The stream is spoken by h2Stream (simh2_test.go), not grpc-go's client.
func (a *simAgent) session(ctx context.Context) error {
	cs, err := dialH2(ctx, a.addr, "/ganglion.v1.AgentService/Stream", a.dial, a.tls)
	if err != nil {
		return err
	}
	defer cs.Close()
	// Halting the agent closes its connection, which ends a read or write in progress.
	defer context.AfterFunc(ctx, func() { cs.Close() })()
	a.mu.Lock()
	hello := a.state.hello(a.node)
	a.mu.Unlock()
	if err := a.send(cs, &v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: hello}}); err != nil {
		return err
	}
	for {
		frame, err := cs.Recv()
		if err != nil {
			return err
		}
		a.mu.Lock()
		reply, synced, err := a.state.answer(frame)
		a.mu.Unlock()
		if err != nil {
			return fmt.Errorf("%s: %w", a.node, err)
		}
		if err := a.send(cs, reply); err != nil {
			return err
		}
		if synced {
			a.syncs++
			a.report()
		}
	}
}

func (a *simAgent) send(cs *h2Stream, m *v1.StreamRequest) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	return cs.Send(b)
}

// report tells the benchmark of a completed snapshot, in one write: lines of a thousand agents
// do not interleave (nor with a command's answer, which is written when the agents are quiet).
func (a *simAgent) report() {
	a.mu.Lock()
	received, held := a.state.counts()
	a.mu.Unlock()
	fmt.Fprintf(cmp.Or[io.Writer](a.reports, os.Stdout), "synced %s %d %d %d\n", a.node, a.syncs, received, held)
}

// errorTally counts session errors by message.
type errorTally struct {
	mu   sync.Mutex
	seen map[string]int
}

func (t *errorTally) add(err error) {
	t.mu.Lock()
	t.seen[fmt.Sprint(err)]++
	t.mu.Unlock()
}

func (t *errorTally) print() {
	msgs := make([]string, 0, len(t.seen))
	for m := range t.seen {
		msgs = append(msgs, m)
	}
	sort.Strings(msgs)
	for _, m := range msgs {
		fmt.Fprintf(os.Stderr, "simulated agents: %d sessions ended: %s\n", t.seen[m], m)
	}
}
