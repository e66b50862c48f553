package compute

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/benchstat"
	"github.com/ganglion-proxy/ganglion/internal/resname"
)

// BenchmarkComputeChange measures one endpoint turning not ready and back, in a Cluster-policy and
// in a Local-policy service, with the envelope loaded: the median of 7 samples of 1,000 changes,
// with the fastest and slowest sample. The line is printed only once the change was seen to do
// what the layers promise, both in every timed delta and, once before the clock starts, in what
// every one of the 5,000 nodes resolves.
func BenchmarkComputeChange(b *testing.B) {
	env := newEnvelope()
	e := env.load()
	for b.Loop() {
		for _, c := range []struct {
			policy string
			svc    int
		}{{"cluster", 1}, {"local", 0}} { // svc-00001: ClusterIP; svc-00000: LoadBalancer, ETP Local
			orig := env.slices[c.svc]
			flipped := *orig
			flipped.Endpoints = slices.Clone(orig.Endpoints)
			flipped.Endpoints[0].Ready = false
			want := env.changeWanted(c.svc)
			if err := checkChangeEverywhere(e, env, &flipped, orig, want); err != nil {
				b.Fatalf("policy %s: %v", c.policy, err)
			}
			// The machine is shared: the figure is the median of several samples, with their spread.
			const samples, rounds = 7, 1000
			var perChange benchstat.Runs
			deltas := make([]Delta, rounds)
			runtime.GC()
			for range samples {
				start := time.Now()
				for r := range rounds {
					sl := orig
					if r%2 == 0 {
						sl = &flipped
					}
					deltas[r] = e.SetSlice(sl)
				}
				perChange = append(perChange, time.Since(start)/rounds)
				for r, d := range deltas {
					if err := want.check(d); err != nil {
						b.Fatalf("policy %s round %d: %v", c.policy, r, err)
					}
				}
			}
			fmt.Printf("BENCH compute change policy=%s micros=%.1f nodes_changed=%d shared_changed=%d samples=%d rounds=%d micros_min=%.1f micros_max=%.1f\n",
				c.policy, micros(perChange.Median()), len(want.nodes), len(want.shared), samples, rounds, micros(perChange.Min()), micros(perChange.Max()))
		}
	}
}

func micros(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// changeWanted is what flipping the first endpoint of a service must report.
type changeWanted struct {
	shared []string            // the cluster set, shared by every node
	nodes  map[string][]string // the local set of the endpoint's node, for a Local-policy service
}

func (env *envelope) changeWanted(i int) changeWanted {
	s := env.services[i]
	b := PortBase(s.Key(), s.Ports[0].Name, model.IPv4)
	w := changeWanted{shared: []string{resname.Join(b, resname.KindCluster)}, nodes: map[string][]string{}}
	if s.ExternalTrafficLocal {
		w.nodes[env.slices[i].Endpoints[0].NodeName] = []string{resname.Join(b, resname.KindLocal)}
	}
	return w
}

func (w changeWanted) check(d Delta) error {
	if !slices.Equal(d.Shared, w.shared) || len(d.Zones) != 0 || fmt.Sprint(d.Nodes) != fmt.Sprint(w.nodes) {
		return fmt.Errorf("delta shared %v zones %v nodes %v, want shared %v and nodes %v", d.Shared, d.Zones, d.Nodes, w.shared, w.nodes)
	}
	return nil
}

// checkChangeEverywhere applies the change and its undoing once and compares, for every node, what
// it resolves for the service's resources before and after with what the delta promised: the
// shared name changed for all, a node's own name only for that node, nothing else anywhere.
func checkChangeEverywhere(e *Engine, env *envelope, changed, orig *model.EndpointSlice, w changeWanted) error {
	s := env.services[slices.IndexFunc(env.slices, func(sl *model.EndpointSlice) bool { return sl == orig })]
	b := PortBase(s.Key(), s.Ports[0].Name, model.IPv4)
	names := []string{resname.Join(b, resname.KindService), resname.Join(b, resname.KindCluster), resname.Join(b, resname.KindLocal)}
	resolve := func() map[string][]string {
		out := map[string][]string{}
		for _, n := range env.nodes {
			for _, name := range names {
				out[n.Name] = append(out[n.Name], version(e.Resolve(n.Name, name)))
			}
		}
		return out
	}
	before := resolve()
	if err := w.check(e.SetSlice(changed)); err != nil {
		return err
	}
	after := resolve()
	if err := w.check(e.SetSlice(orig)); err != nil {
		return fmt.Errorf("undoing: %w", err)
	}
	for _, n := range env.nodes {
		for k, name := range names {
			moved := before[n.Name][k] != after[n.Name][k]
			promised := slices.Contains(w.shared, name) || slices.Contains(w.nodes[n.Name], name)
			if moved != promised {
				return fmt.Errorf("node %s %s: changed %v, the delta promised %v", n.Name, name, moved, promised)
			}
		}
	}
	return nil
}
