package brain_test

import (
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/internal/digest"
)

func (k fanKind) String() string { return [...]string{"cluster", "local", "topology"}[k] }

// moveEffect is what moving endpoint 0 of service i must change, from the workload's design and
// semantics.md rather than from the engine: the layers the engine must report, and per agent
// (by index) the names whose version it must see change. The default cluster set lists every
// ready endpoint, so it always changes; who sees it depends on the kind. seen allocates nothing
// per call: the change loop asks it for 5,000 agents a change, in the brain's process.
func moveEffect(i int) (layers compute.Delta, seen func(node int) []string) {
	names := fanNames(i)
	cluster := []string{names[1]}
	from, to := fanNodeOf(i, 0), fanNodeOf(i, fanEndpoints)
	layers = compute.Delta{Shared: cluster}
	switch fanKindOf(i) {
	case kindLocal: // internal traffic still uses the cluster set; the local sets of the two nodes
		local := names[2]
		layers.Nodes = map[string][]string{simNode(from): {local}, simNode(to): {local}}
		both := []string{names[1], local}
		return layers, func(n int) []string {
			if n == from || n == to {
				return both
			}
			return cluster
		}
	case kindTopology: // every zone is hinted, so nodes see their zone's set: only two zones change
		layers.Zones = map[string][]string{fanZone(from): cluster, fanZone(to): cluster}
		return layers, func(n int) []string {
			if z := fanZone(n); z == fanZone(from) || z == fanZone(to) {
				return cluster
			}
			return nil
		}
	}
	return layers, func(int) []string { return cluster } // one shared resource, seen by every node
}

// seenBy counts the agents that see a change.
func seenBy(seen func(node int) []string) int {
	c := 0
	for n := range fanAgents {
		if len(seen(n)) > 0 {
			c++
		}
	}
	return c
}

// checkMove holds a measured change to its design: the layers the engine reported, and the
// names whose version changed for each agent (resolved by the brain before and after, for the
// nodes fanoutNodes lists).
func checkMove(b testing.TB, i int, got compute.Delta, before, after versions) {
	b.Helper()
	want, seen := moveEffect(i)
	kind := fanKindOf(i)
	if !sameLayer(map[string][]string{"": got.Shared}, map[string][]string{"": want.Shared}) ||
		!sameLayer(got.Zones, want.Zones) || !sameLayer(got.Nodes, want.Nodes) {
		b.Fatalf("moving an endpoint of svc-%d (%s) changed shared %v, zones %v, nodes %v; want shared %v, zones %v, nodes %v",
			i, kind, got.Shared, got.Zones, got.Nodes, want.Shared, want.Zones, want.Nodes)
	}
	var buf []string
	for n := range fanAgents {
		buf = before.changed(after, n, buf[:0])
		if w := seen(n); len(buf) != len(w) || slices.ContainsFunc(w, func(name string) bool { return !slices.Contains(buf, name) }) {
			b.Fatalf("moving an endpoint of svc-%d (%s) changed %v for %s, want %v", i, kind, buf, simNode(n), w)
		}
	}
}

// sameLayer compares name lists by key, in any order; an empty list is no entry.
func sameLayer(a, b map[string][]string) bool {
	norm := func(m map[string][]string) map[string]string {
		out := map[string]string{}
		for k, v := range m {
			if len(v) > 0 {
				out[k] = strings.Join(slices.Sorted(slices.Values(v)), ",")
			}
		}
		return out
	}
	return maps.Equal(norm(a), norm(b))
}

// versions is the version of each name as each node sees it ("" for none), in one flat slice:
// the change loop resolves 5,000 nodes twice a change, and a map per node made as much garbage
// in the brain's process as the brain's own work, and collections in the timed windows.
type versions struct {
	names []string
	v     []string // v[node*len(names)+name]
}

// resolveAll resolves names for nodes in br.
func resolveAll(br *brain.Brain, nodes, names []string) versions {
	out := versions{names: names, v: make([]string, len(nodes)*len(names))}
	br.Hub.View(func(e *compute.Engine) {
		for n, node := range nodes {
			for j, name := range names {
				if r := e.Resolve(node, name); r != nil {
					out.v[n*len(names)+j] = r.Version
				}
			}
		}
	})
	return out
}

// changed appends to buf the names whose version node (by index) sees differently in after.
func (a versions) changed(after versions, node int, buf []string) []string {
	for j, name := range a.names {
		if k := node*len(a.names) + j; a.v[k] != after.v[k] {
			buf = append(buf, name)
		}
	}
	return buf
}

// changedNames lists, per node, the names whose version differs between two resolutions of the
// same nodes and names.
func changedNames(nodes []string, before, after versions) map[string][]string {
	out := map[string][]string{}
	for n, node := range nodes {
		if c := before.changed(after, n, nil); len(c) > 0 {
			out[node] = c
		}
	}
	return out
}

// stateSum is what the brain wants node to hold: how many resources, and one digest of their
// names and versions (internal/digest, in one bucket), for comparison with an agent's.
func stateSum(br *brain.Brain, node string) (resources int, sum uint64) {
	set := digest.New(1)
	br.Hub.View(func(e *compute.Engine) {
		e.ForEach(node, func(r *compute.Resource) { set.Add(r.Name, r.Version); resources++ })
	})
	return resources, set[0]
}

// TestFanoutChangesAreWhatTheirDesignSays runs the benchmarks' invariants on one change of each
// kind without agents, so a workload or engine that breaks them fails here, in seconds.
func TestFanoutChangesAreWhatTheirDesignSays(t *testing.T) {
	br := fanoutBrain(t, auth.Config{Insecure: true})
	nodes := fanoutNodes()
	for c := range 3 {
		i := fanChanged(c, 0) // kinds local, topology, cluster
		before := resolveAll(br, nodes, fanNames(i))
		d := moveServices(br, i)
		checkMove(t, i, d, before, resolveAll(br, nodes, fanNames(i)))
	}
}
