package brain_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/stats"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/grpcopts"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// The fan-out benchmark's size: 1,000 agents, 10,000 services, 100,000 endpoints.
const (
	fanAgents    = 1000
	fanServices  = 10000
	fanEndpoints = 10 // per service
	fanChanges   = 100
	envSimAgents = "GANGLION_SIM_AGENTS" // "addr count": this process runs simulated agents
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(envSimAgents); spec != "" {
		addr, count, _ := strings.Cut(spec, " ")
		n, _ := strconv.Atoi(count)
		os.Exit(runSimAgents(addr, n))
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

// rawCodec sends protobuf messages and receives frames undecoded: a simulated agent keeps no
// state, so decoding a thousand snapshots would only measure the benchmark's own agents.
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

// runSimAgents runs n simulated agents against addr until stdin closes: each says hello with
// nothing held and acknowledges every update.
func runSimAgents(addr string, n int) int {
	raiseFileLimit()
	codec := rawCodec{encoding.GetCodecV2(proto.Name)}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			simAgent(ctx, addr, fmt.Sprintf("node-%04d", i), codec)
		}()
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	cancel()
	wg.Wait()
	return 0
}

func simAgent(ctx context.Context, addr, node string, codec rawCodec) {
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, grpcopts.Client()...)
	conn, err := grpc.NewClient(addr, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, node, err)
		return
	}
	defer conn.Close()
	cs, err := conn.NewStream(ctx, &v1.AgentService_ServiceDesc.Streams[0], "/ganglion.v1.AgentService/Stream", grpc.ForceCodecV2(codec))
	if err != nil {
		fmt.Fprintln(os.Stderr, node, err)
		return
	}
	if err := cs.SendMsg(&v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: &v1.Hello{NodeName: node}}}); err != nil {
		return
	}
	for {
		var f rawFrame
		if err := cs.RecvMsg(&f); err != nil {
			return
		}
		gen, ok := updateHeader(f.b)
		if !ok {
			fmt.Fprintln(os.Stderr, node, "unexpected frame")
			return
		}
		if err := cs.SendMsg(&v1.StreamRequest{Message: &v1.StreamRequest_Ack{Ack: &v1.Ack{Generation: gen}}}); err != nil {
			return
		}
	}
}

// byteCounter counts a client connection's payload bytes on the wire, both ways.
type byteCounter struct{ in, out atomic.Int64 }

func (c *byteCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *byteCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}
func (c *byteCounter) HandleConn(context.Context, stats.ConnStats) {}
func (c *byteCounter) HandleRPC(_ context.Context, s stats.RPCStats) {
	switch p := s.(type) {
	case *stats.InPayload:
		c.in.Add(int64(p.WireLength))
	case *stats.OutPayload:
		c.out.Add(int64(p.WireLength))
	}
}
func (c *byteCounter) total() int64 { return c.in.Load() + c.out.Load() }

func vmHWMMiB() float64 {
	b, _ := os.ReadFile("/proc/self/status")
	for _, line := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(line)); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func waitUntil(b *testing.B, what string, timeout time.Duration, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// measureResume syncs a real agent, disconnects it, and reconnects it with nothing changed: it
// returns the bytes both ways of the full snapshot, and of the resume.
func measureResume(b *testing.B, br *brain.Brain, addr string) (full, resume int64) {
	counter := &byteCounter{}
	probe := newAgent("probe", addr)
	probe.dialOptions(grpc.WithStatsHandler(counter))
	inSync := func() bool {
		s, ok := br.Hub.Sessions()["probe"]
		return ok && s.Synced && s.Pending == 0
	}
	gone := func() bool { _, ok := br.Hub.Sessions()["probe"]; return !ok }
	probe.start(b)
	waitUntil(b, "probe synced", time.Minute, inSync)
	full = counter.total()
	probe.halt()
	waitUntil(b, "probe gone", time.Minute, gone)
	counter.in.Store(0)
	counter.out.Store(0)
	probe.start(b)
	waitUntil(b, "probe resynced", time.Minute, inSync)
	resume = counter.total()
	probe.halt()
	waitUntil(b, "probe gone", time.Minute, gone)
	return full, resume
}

// BenchmarkFanout runs the brain in this process and 1,000 simulated agents, over real gRPC
// streams, in a child process.
func BenchmarkFanout(b *testing.B) {
	raiseFileLimit()
	for b.Loop() {
		br, err := brain.New(brain.Options{Log: quiet, Stream: stream.Options{StallTimeout: 5 * time.Minute}, Auth: auth.Config{Insecure: true}})
		if err != nil {
			b.Fatal(err)
		}
		br.Hub.Apply(time.Time{}, 1, func(e *compute.Engine) compute.Delta {
			for i := range fanServices {
				e.SetSlice(testSlice(i, fanEndpoints, 0))
				e.SetService(testService(i))
			}
			return compute.Delta{}
		})
		br.MarkSynced()
		lis := listen(b)
		go br.Serve(lis)
		addr := lis.Addr().String()

		// The resume probe: a real agent that syncs, leaves, and comes back with nothing changed.
		fullBytes, resumeBytes := measureResume(b, br, addr)

		m := br.Hub.Metrics()
		start := time.Now()
		child := exec.Command(os.Args[0], "-test.run=^$")
		child.Env = append(os.Environ(), envSimAgents+"="+addr+" "+strconv.Itoa(fanAgents))
		child.Stderr = os.Stderr
		stdin, _ := child.StdinPipe()
		if err := child.Start(); err != nil {
			b.Fatal(err)
		}
		synced := func() bool {
			n := 0
			for _, s := range br.Hub.Sessions() {
				if s.Synced && s.Pending == 0 {
					n++
				}
			}
			return n == fanAgents
		}
		waitUntil(b, "initial sync of every agent", 10*time.Minute, synced)
		initial := time.Since(start)

		var lat []time.Duration
		bytesBefore := testutil.ToFloat64(m.Bytes)
		for c := range fanChanges {
			acks := testutil.ToFloat64(m.Acks)
			t0 := time.Now()
			setSlice(br, c, fanEndpoints, 1)
			waitUntil(b, "every agent acknowledged the change", time.Minute, func() bool {
				return testutil.ToFloat64(m.Acks) >= acks+fanAgents
			})
			lat = append(lat, time.Since(t0))
		}
		perAgent := (testutil.ToFloat64(m.Bytes) - bytesBefore) / fanChanges / fanAgents
		stdin.Close()
		_ = child.Wait()
		br.Stop()

		slices.Sort(lat)
		p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))].Microseconds()) / 1000 }
		fmt.Printf("BENCH fanout agents=%d services=%d endpoints=%d initial_s=%.1f p50_ms=%.1f p99_ms=%.1f bytes_per_agent=%.0f resume_ratio=%.4f brain_rss_mib=%.0f resume_bytes=%d snapshot_bytes=%d\n",
			fanAgents, fanServices, fanServices*fanEndpoints, initial.Seconds(), p(0.5), p(0.99), perAgent,
			float64(resumeBytes)/float64(fullBytes), vmHWMMiB(), resumeBytes, fullBytes)
	}
}
