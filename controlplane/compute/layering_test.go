package compute

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// TestLayersMatchTheRulesOnEveryNode builds random clusters, then changes them step by step, and
// after the load and after every step compares what the engine materialises for every node (its
// layers resolved, decoded from the wire bytes) with the oracle's naive reading of semantics.md for
// that node; after every step it also checks that the delta named every resource that changed for
// any node. A failure names the seed, iteration and step that replay it.
func TestLayersMatchTheRulesOnEveryNode(t *testing.T) {
	seed := testSeed(t)
	iterations, steps := 50, 12
	if testing.Short() {
		iterations = 10
	}
	for iter := range iterations {
		g := &clusterGen{r: rand.New(rand.NewPCG(seed, uint64(iter)))}
		m := g.model()
		e := NewEngine(m.opts)
		g.load(m, e)
		where := fmt.Sprintf("seed %d iteration %d, after the load", seed, iter)
		checkEveryNode(t, m, e, g.observers(), where)
		for step := range steps {
			before := map[string]map[string]string{}
			for _, n := range g.observers() {
				before[n] = versions(e.NodeState(n))
			}
			what, d := g.mutate(m, e)
			where := fmt.Sprintf("seed %d iteration %d step %d (%s)", seed, iter, step, what)
			checkDelta(t, e, before, d, where)
			checkEveryNode(t, m, e, g.observers(), where)
		}
	}
}

func checkEveryNode(t *testing.T, m *naiveModel, e *Engine, observers []string, where string) {
	t.Helper()
	for _, n := range observers {
		want := m.expect(n)
		var names []string
		for k := range want {
			for _, kind := range []string{"service", "cluster", "local"} {
				names = append(names, k+"/"+kind) // keys that are not bases resolve to nothing
			}
		}
		got, err := materialised(e, n, names)
		if err != nil {
			t.Fatalf("%s\nnode %s: %v", where, n, err)
		}
		for _, k := range slices.Sorted(maps.Keys(unionStrings(want, got))) {
			if want[k] != got[k] {
				zone := ""
				if m.nodes[n] != nil {
					zone = m.nodes[n].Zone
				}
				t.Fatalf("%s\nnode %s (zone %q), %s:\n got %s\nwant %s\nthe service in the model:\n%s",
					where, n, zone, k, orAbsent(got[k]), orAbsent(want[k]), m.dump(k))
			}
		}
	}
}

// checkDelta fails when a resource changed for a node and d did not name it in a layer that node
// reads: the stream would never send the change.
func checkDelta(t *testing.T, e *Engine, before map[string]map[string]string, d Delta, where string) {
	t.Helper()
	for n, was := range before {
		dirty := map[string]bool{}
		for _, name := range slices.Concat(d.Shared, d.Zones[e.Zone(n)], d.Nodes[n]) {
			dirty[name] = true
		}
		now := versions(e.NodeState(n))
		for name := range unionStrings(was, now) {
			if was[name] != now[name] && !dirty[name] {
				t.Fatalf("%s\nnode %s: %s changed but the delta %+v did not say so", where, n, name, d)
			}
		}
	}
}

func orAbsent(s string) string {
	if s == "" {
		return "(absent)"
	}
	return s
}

// dump prints the service a base or key names, and its slices, for a failure message.
func (m *naiveModel) dump(key string) string {
	ns, rest, _ := strings.Cut(strings.Fields(key)[0], "/")
	name := rest[:strings.IndexAny(rest+"/", ":/")]
	var b strings.Builder
	fmt.Fprintf(&b, "  %+v\n", m.services[model.ServiceKey{Namespace: ns, Name: name}])
	for _, k := range sortedKeys(m.slices) {
		if sl := m.slices[k]; sl.Namespace == ns && sl.Service == name {
			fmt.Fprintf(&b, "  slice %s %s ports %+v\n", sl.Name, sl.Family, sl.Ports)
			for _, ep := range sl.Endpoints {
				fmt.Fprintf(&b, "    %+v\n", ep)
			}
		}
	}
	for _, n := range slices.Sorted(maps.Keys(m.nodes)) {
		fmt.Fprintf(&b, "  node %s zone %q\n", n, m.nodes[n].Zone)
	}
	return b.String()
}

// mutate makes one random change to the model and to the engine alike, and says what it was and
// what the engine said changed.
func (g *clusterGen) mutate(m *naiveModel, e *Engine) (string, Delta) {
	sliceKeys, svcKeys := sortedKeys(m.slices), sortedKeys(m.services)
	switch op := g.r.IntN(8); {
	case op == 0 && len(sliceKeys) > 0:
		return g.flipEndpoint(m, e, sliceKeys[g.r.IntN(len(sliceKeys))])
	case op == 1 && len(sliceKeys) > 0:
		k := sliceKeys[g.r.IntN(len(sliceKeys))]
		s := m.services[m.slices[k].ServiceKey()]
		if s == nil {
			return g.deleteSlice(m, e, k)
		}
		sl := g.slice(s, g.index[s.Key()], k.Name, m.slices[k].Family)
		m.slices[k] = sl
		return "slice " + k.Name + " regenerated", e.SetSlice(sl)
	case op == 2 && len(sliceKeys) > 0:
		return g.deleteSlice(m, e, sliceKeys[g.r.IntN(len(sliceKeys))])
	case op == 3 && len(svcKeys) > 0 && g.one(2):
		k := svcKeys[g.r.IntN(len(svcKeys))]
		s := g.service(g.index[k])
		m.services[k] = s
		return "service " + k.String() + " replaced", e.SetService(s)
	case op == 3:
		s := g.addService(m, len(g.index))
		d := e.SetService(s)
		for _, k := range sortedKeys(m.slices) {
			if m.slices[k].ServiceKey() == s.Key() {
				d.Merge(e.SetSlice(m.slices[k]))
			}
		}
		return "service " + s.Key().String() + " added", d
	case op == 4 && len(svcKeys) > 0:
		k := svcKeys[g.r.IntN(len(svcKeys))]
		delete(m.services, k)
		return "service " + k.String() + " deleted", e.DeleteService(k)
	case op == 5:
		n := g.node(g.pick(g.nodes))
		m.nodes[n.Name] = n
		return fmt.Sprintf("node %s set in zone %q", n.Name, n.Zone), e.SetNode(n)
	case op == 6 && len(m.nodes) > 0:
		name := g.pick(slices.Sorted(maps.Keys(m.nodes)))
		delete(m.nodes, name)
		return "node " + name + " deleted", e.DeleteNode(name)
	case op == 7 && len(sliceKeys) > 0 && len(svcKeys) > 0:
		k, to := sliceKeys[g.r.IntN(len(sliceKeys))], svcKeys[g.r.IntN(len(svcKeys))]
		sl := *m.slices[k]
		sl.Service = to.Name // in the slice's own namespace, which may have no such service
		m.slices[k] = &sl
		return "slice " + k.Name + " moved to service " + to.Name, e.SetSlice(&sl)
	}
	return "nothing", Delta{}
}

// flipEndpoint gives one endpoint of a slice new conditions: the change clusters make most.
func (g *clusterGen) flipEndpoint(m *naiveModel, e *Engine, k model.SliceKey) (string, Delta) {
	sl := *m.slices[k]
	if len(sl.Endpoints) == 0 {
		return "nothing", Delta{}
	}
	sl.Endpoints = slices.Clone(sl.Endpoints)
	j := g.r.IntN(len(sl.Endpoints))
	c := endpointConditions[g.r.IntN(len(endpointConditions))]
	sl.Endpoints[j].Ready, sl.Endpoints[j].Serving, sl.Endpoints[j].Terminating = c[0], c[1], c[2]
	m.slices[k] = &sl
	return fmt.Sprintf("slice %s endpoint %s now ready=%v serving=%v terminating=%v", k.Name, sl.Endpoints[j].Address, c[0], c[1], c[2]), e.SetSlice(&sl)
}

func (g *clusterGen) deleteSlice(m *naiveModel, e *Engine, k model.SliceKey) (string, Delta) {
	delete(m.slices, k)
	return "slice " + k.Name + " deleted", e.DeleteSlice(k)
}
