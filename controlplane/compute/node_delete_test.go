package compute

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// Deleting a Node object takes away what came from it: its zone. What came from endpoints that
// name the node (its local sets, node hints, probe sets) stays while those endpoints do:
// semantics.md decides a node's sets from the endpoints' nodeName, and an agent of that name still
// connects as a node in no zone.
func TestDeleteNode(t *testing.T) {
	cases := []struct {
		name      string
		node      string
		wantDelta map[string][]string // Delta.Nodes; Shared and Zones must stay empty
		wantState string              // the node's port afterwards
	}{
		{name: "a node of a hinted zone falls back to the default cluster set and keeps its local set", node: "n1",
			wantDelta: map[string][]string{"n1": {base + "/cluster"}},
			wantState: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080 10.1.0.3:8080 | external=local FORWARD 10.1.0.1:8080"},
		{name: "a node of the other zone", node: "n3",
			wantDelta: map[string][]string{"n3": {base + "/cluster"}},
			wantState: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080 10.1.0.3:8080 | external=local FORWARD 10.1.0.3:8080"},
		{name: "a node in no zone resolves as before", node: "n4",
			wantState: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080 10.1.0.3:8080 | external=local DROP"},
		{name: "a node the engine never knew", node: "n9",
			wantState: "internal=cluster FORWARD 10.1.0.1:8080 10.1.0.2:8080 10.1.0.3:8080 | external=local DROP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := deleteNodeCluster(t)
			others := map[string]map[string]string{}
			for _, n := range []string{"n1", "n2", "n3", "n4", "n9"} {
				if n != tc.node {
					others[n] = versions(e.NodeState(n))
				}
			}

			d := e.DeleteNode(tc.node)

			if len(d.Shared) != 0 || len(d.Zones) != 0 || fmt.Sprint(d.Nodes) != fmt.Sprint(tc.wantDelta) {
				t.Errorf("delta %+v, want only nodes %v", d, tc.wantDelta)
			}
			if got := summaries(e, tc.node)[base]; got != tc.wantState {
				t.Errorf("%s afterwards:\n got %s\nwant %s", tc.node, got, tc.wantState)
			}
			if slices.Contains(e.Nodes(), tc.node) || e.Zone(tc.node) != "" {
				t.Errorf("%s still known: nodes %v, zone %q", tc.node, e.Nodes(), e.Zone(tc.node))
			}
			if got, own := e.Overrides(tc.node), len(e.byNode[tc.node]); got != own {
				t.Errorf("%s: %d overrides, want only its %d own: its zone's must no longer count", tc.node, got, own)
			}
			for n, before := range others {
				if after := versions(e.NodeState(n)); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Errorf("node %s changed although %s was deleted:\n%v\n%v", n, tc.node, before, after)
				}
			}
		})
	}
}

// A node deleted and declared again is as before, and the delta of its return names what the
// delta of its deletion named.
func TestDeleteNodeThenSetItAgain(t *testing.T) {
	e := deleteNodeCluster(t)
	before := versions(e.NodeState("n1"))
	gone := e.DeleteNode("n1")
	back := e.SetNode(node("n1", "a"))
	if fmt.Sprint(gone) != fmt.Sprint(back) {
		t.Errorf("deleting said %+v, returning said %+v", gone, back)
	}
	if after := versions(e.NodeState("n1")); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("state after returning:\n%v\nbefore:\n%v", after, before)
	}
	if d := e.DeleteNode("n4"); !d.Empty() {
		t.Errorf("deleting a node in no zone changed %+v", d)
	}
	if d := e.DeleteNode("n4"); !d.Empty() {
		t.Errorf("deleting it twice changed %+v", d)
	}
}

// deleteNodeCluster is an ETP Local NodePort service whose endpoints carry zone hints: the nodes
// of zones a and b see their zone's cluster set, every node with an endpoint its own local set, and
// n1 a probe set.
func deleteNodeCluster(t *testing.T) *Engine {
	s := svc(nodePort, etpLocal, func(s *model.Service) {
		s.HealthCheck = &model.HealthCheck{Action: model.ProbeTCPSocket, PeriodSeconds: 1, FailureThreshold: 1}
	})
	return engineWith(t, s, []*model.EndpointSlice{slice("web-1",
		ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.2", "n2", zones("a")), ep("10.1.0.3", "n3", zones("b")))}, testNodes...)
}
