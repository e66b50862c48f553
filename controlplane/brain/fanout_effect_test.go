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
// semantics.md rather than from the engine: the layers the engine must report, and per agent the
// names whose version it must see change. The default cluster set lists every ready endpoint, so
// it always changes; who sees it depends on the kind.
func moveEffect(i int) (layers compute.Delta, seen map[string][]string) {
	names := fanNames(i)
	cluster := names[1]
	from, to := fanNodeOf(i, 0), fanNodeOf(i, fanEndpoints)
	layers = compute.Delta{Shared: []string{cluster}}
	seen = map[string][]string{}
	switch fanKindOf(i) {
	case kindCluster: // one shared resource, seen by every node; nothing per node or zone
		for n := range fanAgents {
			seen[simNode(n)] = []string{cluster}
		}
	case kindLocal: // internal traffic still uses the cluster set; the local sets of the two nodes
		local := names[2]
		for n := range fanAgents {
			seen[simNode(n)] = []string{cluster}
		}
		layers.Nodes = map[string][]string{simNode(from): {local}, simNode(to): {local}}
		seen[simNode(from)] = append(seen[simNode(from)], local)
		seen[simNode(to)] = append(seen[simNode(to)], local)
	case kindTopology: // every zone is hinted, so nodes see their zone's set: only two zones change
		layers.Zones = map[string][]string{fanZone(from): {cluster}, fanZone(to): {cluster}}
		for n := range fanAgents {
			if z := fanZone(n); z == fanZone(from) || z == fanZone(to) {
				seen[simNode(n)] = []string{cluster}
			}
		}
	}
	return layers, seen
}

// checkMove holds a measured change to its design: the layers the engine reported, and the
// names whose version changed for each agent (resolved by the brain before and after).
func checkMove(b testing.TB, i int, got compute.Delta, changed map[string][]string) {
	b.Helper()
	want, seen := moveEffect(i)
	kind := fanKindOf(i)
	if !sameLayer(map[string][]string{"": got.Shared}, map[string][]string{"": want.Shared}) ||
		!sameLayer(got.Zones, want.Zones) || !sameLayer(got.Nodes, want.Nodes) {
		b.Fatalf("moving an endpoint of svc-%d (%s) changed shared %v, zones %v, nodes %v; want shared %v, zones %v, nodes %v",
			i, kind, got.Shared, got.Zones, got.Nodes, want.Shared, want.Zones, want.Nodes)
	}
	if !sameLayer(changed, seen) {
		b.Fatalf("moving an endpoint of svc-%d (%s) changed what %d agents see, want %d", i, kind, len(changed), len(seen))
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

// resolveAll is the version of each name as each node sees it in br ("" for none).
func resolveAll(br *brain.Brain, nodes, names []string) map[string]map[string]string {
	out := make(map[string]map[string]string, len(nodes))
	br.Hub.View(func(e *compute.Engine) {
		for _, n := range nodes {
			v := make(map[string]string, len(names))
			for _, name := range names {
				if r := e.Resolve(n, name); r != nil {
					v[name] = r.Version
				}
			}
			out[n] = v
		}
	})
	return out
}

// changedNames lists, per node, the names whose version differs between two resolutions of the
// same nodes and names.
func changedNames(before, after map[string]map[string]string) map[string][]string {
	out := map[string][]string{}
	for node, vs := range after {
		for _, name := range slices.Sorted(maps.Keys(vs)) {
			if before[node][name] != vs[name] {
				out[node] = append(out[node], name)
			}
		}
		for name := range before[node] {
			if _, ok := vs[name]; !ok {
				out[node] = append(out[node], name)
			}
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
		checkMove(t, i, d, changedNames(before, resolveAll(br, nodes, fanNames(i))))
	}
}
