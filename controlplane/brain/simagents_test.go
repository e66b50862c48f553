package brain_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ganglion-proxy/ganglion/internal/grpcopts"
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
	// Hold makes agents keep what they are sent and resume from it; otherwise they acknowledge
	// without decoding and say hello with nothing held.
	Hold bool
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

// runSimAgents runs cfg.Agents simulated agents until stdin closes. Each prints a line
// "synced <node> <snapshots> <received> <held>" when it completes a snapshot; session errors are
// summed up on stderr at the end, as a storm makes a thousand of each.
func runSimAgents(cfg simConfig) int {
	raiseFileLimit()
	roots, err := pki.LoadPool(filepath.Join(cfg.PKIDir, pki.CACert))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	codec := rawCodec{encoding.GetCodecV2(proto.Name)}
	errs := &errorTally{seen: map[string]int{}}
	agents := make([]*simAgent, cfg.Agents)
	for i := range agents {
		node := simNode(i)
		creds, err := nodeCreds(cfg.PKIDir, node, roots)
		if err != nil {
			fmt.Fprintln(os.Stderr, node, err)
			return 2
		}
		agents[i] = &simAgent{node: node, addr: cfg.Addr, codec: codec, errs: errs, state: ackOnly{},
			dial: append(grpcopts.Client(), creds)}
		if cfg.Hold {
			agents[i].state = newSimHeld()
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, a := range agents {
		wg.Go(func() { a.run(ctx) })
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	cancel()
	wg.Wait()
	errs.print()
	return 0
}

// simState is what a simulated agent does with what it receives.
type simState interface {
	hello(node string) *v1.Hello
	// answer replies to one StreamResponse; synced says it completed a snapshot.
	answer(frame []byte) (reply *v1.StreamRequest, synced bool, err error)
	// counts are the resources received since the hello, and those held.
	counts() (received, held int)
}

// simAgent is one simulated agent: sessions to one brain, with the production backoff between.
type simAgent struct {
	node  string
	addr  string
	dial  []grpc.DialOption
	codec rawCodec
	state simState
	errs  *errorTally
	syncs int // snapshots completed
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
// as with the real agent.
func (a *simAgent) session(ctx context.Context) error {
	conn, err := grpc.NewClient(a.addr, a.dial...)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cs, err := conn.NewStream(ctx, &v1.AgentService_ServiceDesc.Streams[0], "/ganglion.v1.AgentService/Stream", grpc.ForceCodecV2(a.codec))
	if err != nil {
		return err
	}
	if err := cs.SendMsg(&v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: a.state.hello(a.node)}}); err != nil {
		return err
	}
	for {
		var f rawFrame
		if err := cs.RecvMsg(&f); err != nil {
			return err
		}
		reply, synced, err := a.state.answer(f.b)
		if err != nil {
			return fmt.Errorf("%s: %w", a.node, err)
		}
		if err := cs.SendMsg(reply); err != nil {
			return err
		}
		if synced {
			a.syncs++
			a.report()
		}
	}
}

// report tells the benchmark of a completed snapshot, in one write: lines of a thousand agents
// do not interleave.
func (a *simAgent) report() {
	received, held := a.state.counts()
	fmt.Fprintf(os.Stdout, "synced %s %d %d %d\n", a.node, a.syncs, received, held)
}

// ackOnly is the agent of BenchmarkFanout: it holds nothing and acknowledges every update
// without reading past its generation, so it never knows it synced.
type ackOnly struct{}

func (ackOnly) counts() (int, int) { return 0, 0 }

func (ackOnly) hello(node string) *v1.Hello { return &v1.Hello{NodeName: node} }

func (ackOnly) answer(frame []byte) (*v1.StreamRequest, bool, error) {
	gen, ok := updateHeader(frame)
	if !ok {
		return nil, false, errBadFrame
	}
	return &v1.StreamRequest{Message: &v1.StreamRequest_Ack{Ack: &v1.Ack{Generation: gen}}}, false, nil
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

// rawCodec sends protobuf messages and receives frames undecoded: a simulated agent reads only
// what it needs, so decoding a thousand snapshots does not measure the benchmark's own agents.
type rawCodec struct{ encoding.CodecV2 }

type rawFrame struct{ b []byte }

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if f, ok := v.(*rawFrame); ok {
		f.b = data.Materialize()
		return nil
	}
	return c.CodecV2.Unmarshal(data, v)
}

// updateHeader reads an update frame's generation, or reports that it is not an update.
func updateHeader(b []byte) (gen uint64, ok bool) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 || num != 1 || typ != protowire.BytesType {
		return 0, false
	}
	u, m := protowire.ConsumeBytes(b[n:])
	if m < 0 {
		return 0, false
	}
	for len(u) > 0 {
		num, typ, n := protowire.ConsumeTag(u)
		if n < 0 {
			return 0, false
		}
		u = u[n:]
		if num == 1 && typ == protowire.VarintType {
			gen, _ = protowire.ConsumeVarint(u)
			return gen, true
		}
		u = u[max(protowire.ConsumeFieldValue(num, typ, u), 0):]
	}
	return 0, false
}
