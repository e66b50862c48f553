package brain_test

import (
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/internal/digest"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	agentstream "github.com/ganglion-proxy/ganglion/nodeagent/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// applyFleet is the agents of BenchmarkFanout: the real agent client (nodeagent/stream) over a
// counting dataplane, so every update is read and applied port by port before it is
// acknowledged, as on a node. The agents hold their resources through one stream.Share. They dial through a wire meter each, with the production backoff.
type applyFleet struct {
	countingAgents
	wire []*wireMeter
}

func startApplyFleet(cfg simConfig, roots *pki.Pool) (*applyFleet, error) {
	f := &applyFleet{}
	var err error
	f.countingAgents, err = startCountingAgents(cfg, roots, "bench", quiet, func() []grpc.DialOption {
		m := &wireMeter{}
		f.wire = append(f.wire, m)
		return []grpc.DialOption{m.dialOption()}
	})
	if err != nil {
		return nil, err
	}
	return f, nil
}

// countingAgents are real agent clients over counting dataplanes, holding their resources
// through one stream.Share: the apply and soak fleets' agents.
type countingAgents struct {
	agents []*runningAgent
	dps    []*countingDataplane
}

// startCountingAgents starts cfg.Agents agents; dial, when set, gives each agent more dial
// options beside its node certificate.
func startCountingAgents(cfg simConfig, roots *pki.Pool, version string, log *slog.Logger, dial func() []grpc.DialOption) (countingAgents, error) {
	var c countingAgents
	share := agentstream.NewShare()
	for i := range cfg.Agents {
		node := simNode(i)
		creds, err := nodeCreds(cfg.PKIDir, node, roots)
		if err != nil {
			return c, fmt.Errorf("%s: %w", node, err)
		}
		opts := []grpc.DialOption{creds}
		if dial != nil {
			opts = append(opts, dial()...)
		}
		dp := &countingDataplane{ports: map[string]uint64{}}
		acfg := agentstream.Config{NodeName: node, AgentVersion: version, Brains: []string{cfg.Addr}, Log: log,
			Dataplane: dp, Share: share, DialOptions: opts}
		a := &runningAgent{Agent: agentstream.New(acfg), cfg: acfg}
		c.agents, c.dps = append(c.agents, a), append(c.dps, dp)
		a.run()
	}
	return c, nil
}

// writeState answers "state": a line "state <node> <resources> <digest> <dataplane>" per agent,
// the dataplane "ok" when it programs exactly what the agent holds.
func (c countingAgents) writeState(out io.Writer) {
	for i, a := range c.agents {
		held := a.Held()
		set := digest.New(1)
		for name, version := range held {
			set.Add(name, version)
		}
		dp := "ok"
		if err := c.dps[i].holds(a.Agent, held); err != nil {
			dp = strconv.Quote(err.Error())
		}
		fmt.Fprintf(out, "state %s %d %d %s\n", a.cfg.NodeName, len(held), set[0], dp)
	}
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
		f.writeState(out)
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

// portsMatchHeld checks that ports, the digests of the programmed ports by base, are exactly
// what agent a holds: one port per held service resource, made of the held resources.
func portsMatchHeld(ports map[string]uint64, held map[string]string, a *agentstream.Agent) error {
	services := 0
	for name := range held {
		base, kind := resname.Split(name)
		if kind != resname.KindService {
			continue
		}
		services++
		var msgs [3]*v1.Resource
		for i, k := range []string{resname.KindService, resname.KindCluster, resname.KindLocal} {
			m, err := a.HeldResource(resname.Join(base, k))
			if err != nil {
				return fmt.Errorf("%s: %w", resname.Join(base, k), err)
			}
			msgs[i] = m
		}
		if want := portDigest(msgs[0].GetService(), msgs[1].GetEndpoints(), msgs[2].GetEndpoints()); ports[base] != want {
			return fmt.Errorf("%s at %s is not what the dataplane programs", name, held[name])
		}
	}
	if len(ports) != services {
		return fmt.Errorf("the dataplane programs %d ports, the agent holds %d services", len(ports), services)
	}
	return nil
}

// portDigest sums up a port's messages: what a fleet's dataplane keeps of a port, where the
// ports themselves, decoded by every agent, would take gigabytes.
func portDigest(svc *v1.ServicePort, cluster, local *v1.EndpointSet) uint64 {
	h := fnv.New64a()
	for _, m := range []proto.Message{svc, cluster, local} {
		if m.ProtoReflect().IsValid() {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
			if err != nil {
				panic(err)
			}
			h.Write([]byte{1})
			h.Write(b)
		}
		h.Write([]byte{0})
	}
	return h.Sum64()
}
