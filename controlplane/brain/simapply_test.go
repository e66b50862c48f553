package brain_test

import (
	"fmt"
	"io"
	"strconv"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"

	"github.com/ganglion-proxy/ganglion/internal/digest"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	agentstream "github.com/ganglion-proxy/ganglion/nodeagent/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// applyFleet is the agents of BenchmarkFanout: the real agent client (nodeagent/stream) over the
// recording dataplane, so every update is decoded in full and applied port by port before it is
// acknowledged, as on a node. They dial through a wire meter each, with the production backoff.
type applyFleet struct {
	agents []*runningAgent
	wire   []*wireMeter
	table  *internTable
}

func startApplyFleet(cfg simConfig, roots *pki.Pool) (*applyFleet, error) {
	f := &applyFleet{table: &internTable{m: map[[2]string]*v1.Resource{}}}
	codec := grpc.WithDefaultCallOptions(grpc.ForceCodecV2(internCodec{encoding.GetCodecV2(proto.Name), f.table}))
	for i := range cfg.Agents {
		node := simNode(i)
		creds, err := nodeCreds(cfg.PKIDir, node, roots)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", node, err)
		}
		m := &wireMeter{}
		a := newRunningAgent(agentstream.Config{NodeName: node, AgentVersion: "bench", Brains: []string{cfg.Addr}, Log: quiet,
			DialOptions: []grpc.DialOption{creds, m.dialOption(), codec}})
		f.agents, f.wire = append(f.agents, a), append(f.wire, m)
		a.run()
	}
	return f, nil
}

// command answers:
//
//	bytes             "bytes <node> <n>": each agent's bytes on the wire so far
//	state             "state <node> <resources> <digest> <dataplane>": what each agent holds
//	halt <from> <to>  stops agents from..to-1, their connections closed when it answers
//	start <from> <to> starts them again, with what they hold
func (f *applyFleet) command(args []string, out io.Writer) error {
	switch {
	case len(args) == 1 && args[0] == "bytes":
		for i, a := range f.agents {
			fmt.Fprintf(out, "bytes %s %d\n", a.cfg.NodeName, f.wire[i].bytes.Load())
		}
	case len(args) == 1 && args[0] == "state":
		for _, a := range f.agents {
			held := a.Held()
			set := digest.New(1)
			for name, version := range held {
				set.Add(name, version)
			}
			dp := "ok"
			if err := f.dataplaneHolds(a, held); err != nil {
				dp = strconv.Quote(err.Error())
			}
			fmt.Fprintf(out, "state %s %d %d %s\n", a.cfg.NodeName, len(held), set[0], dp)
		}
	case len(args) == 3 && (args[0] == "halt" || args[0] == "start"):
		from, err1 := strconv.Atoi(args[1])
		to, err2 := strconv.Atoi(args[2])
		if err1 != nil || err2 != nil || from < 0 || to > len(f.agents) || from > to {
			return fmt.Errorf("bad range %q", args[1:])
		}
		for _, a := range f.agents[from:to] {
			if args[0] == "halt" {
				a.halt()
			} else {
				a.run()
			}
		}
	default:
		return fmt.Errorf("unknown command %q", args)
	}
	return nil
}

func (f *applyFleet) stop() {
	for _, a := range f.agents {
		a.halt()
	}
}

// dataplaneHolds checks that a's dataplane programs exactly what a holds (see portsMatchHeld).
func (f *applyFleet) dataplaneHolds(a *runningAgent, held map[string]string) error {
	return portsMatchHeld(a.dp.Ports(), held, f.table.get)
}

// portsMatchHeld checks that ports are exactly what an agent holds: one port per held service
// resource, made of the very messages held (interned, so the same pointers), and no endpoint set
// the agent does not hold. get returns the process's one copy of a name at a version.
func portsMatchHeld(ports map[string]dataplane.Port, held map[string]string, get func(name, version string) *v1.Resource) error {
	want := map[string]int{}
	for name, version := range held {
		base, kind := resname.Split(name)
		msg, p := get(name, version), ports[base]
		var same bool
		switch kind {
		case resname.KindService:
			same = p.Service != nil && p.Service == msg.GetService()
		case resname.KindCluster:
			same = p.Cluster != nil && p.Cluster == msg.GetEndpoints()
		case resname.KindLocal:
			same = p.Local != nil && p.Local == msg.GetEndpoints()
		default:
			same = true // probe sets are the prober's, not the dataplane's
		}
		if !same {
			return fmt.Errorf("%s at %s is not what the dataplane programs", name, version)
		}
		want[kind]++
	}
	got := map[string]int{resname.KindService: len(ports)}
	for _, p := range ports {
		if p.Cluster != nil {
			got[resname.KindCluster]++
		}
		if p.Local != nil {
			got[resname.KindLocal]++
		}
	}
	for _, kind := range []string{resname.KindService, resname.KindCluster, resname.KindLocal} {
		if got[kind] != want[kind] {
			return fmt.Errorf("the dataplane programs %d %s resources, the agent holds %d", got[kind], kind, want[kind])
		}
	}
	return nil
}

// internCodec decodes every message in full, as the agent's own codec does, then swaps each
// received resource for the process's one copy of that name and version. A thousand agents in
// one process would otherwise hold a thousand copies of the same 21,000 resources (gigabytes),
// where agents on their own nodes share nothing and pay for one copy each. The decoding, the
// work an agent does, is not shared. Resources are never modified once received.
type internCodec struct {
	encoding.CodecV2
	table interface {
		intern(*v1.Resource) *v1.Resource
	}
}

func (c internCodec) Unmarshal(data mem.BufferSlice, v any) error {
	if err := c.CodecV2.Unmarshal(data, v); err != nil {
		return err
	}
	if resp, ok := v.(*v1.StreamResponse); ok && resp.GetUpdate() != nil {
		u := resp.GetUpdate()
		for i, r := range u.Upserts {
			u.Upserts[i] = c.table.intern(r)
		}
	}
	return nil
}

// internTable holds one copy of each resource version received by the process.
type internTable struct {
	mu sync.Mutex
	m  map[[2]string]*v1.Resource
}

func (t *internTable) intern(r *v1.Resource) *v1.Resource {
	key := [2]string{r.Name, r.Version}
	t.mu.Lock()
	defer t.mu.Unlock()
	if have := t.m[key]; have != nil {
		return have
	}
	t.m[key] = r
	return r
}

func (t *internTable) get(name, version string) *v1.Resource {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[[2]string{name, version}]
}
