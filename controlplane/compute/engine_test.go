package compute

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

func TestClusterPolicyEndpointChangeTouchesOneSharedResource(t *testing.T) {
	e := engineWith(t, svc(nodePort), []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2"))}, testNodes...)
	d := e.SetSlice(slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2", notReady)))
	if !slices.Equal(d.Shared, []string{base + "/cluster"}) || len(d.Zones) != 0 || len(d.Nodes) != 0 {
		t.Errorf("delta %+v, want only the shared cluster set", d)
	}
}

func TestLocalPolicyEndpointChangeTouchesOnlyItsNode(t *testing.T) {
	e := engineWith(t, svc(nodePort, etpLocal), []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2"), ep("10.1.0.3", "n2"))}, testNodes...)
	d := e.SetSlice(slice("web-1", ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2"), ep("10.1.0.3", "n2", notReady)))
	if !slices.Equal(d.Shared, []string{base + "/cluster"}) {
		t.Errorf("shared %v, want the cluster set", d.Shared)
	}
	if len(d.Nodes) != 1 || !slices.Equal(d.Nodes["n2"], []string{base + "/local"}) || len(d.Zones) != 0 {
		t.Errorf("nodes %v zones %v, want only n2's local set", d.Nodes, d.Zones)
	}
}

func TestZoneHintChangeTouchesOnlyItsZone(t *testing.T) {
	eps := func(mods ...func(*model.Endpoint)) []model.Endpoint {
		return []model.Endpoint{ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.2", "n2", append(mods, zones("a"))...), ep("10.1.0.3", "n3", zones("b"))}
	}
	e := engineWith(t, svc(), []*model.EndpointSlice{slice("web-1", eps()...)}, testNodes...)
	d := e.SetSlice(slice("web-1", eps(func(e *model.Endpoint) { e.Weight = 5 })...))
	if len(d.Nodes) != 0 || !slices.Equal(d.Zones["a"], []string{base + "/cluster"}) || len(d.Zones) != 1 {
		t.Errorf("zones %v nodes %v", d.Zones, d.Nodes)
	}
	// The default (nodes in no hinted zone) also saw the weight change.
	if !slices.Equal(d.Shared, []string{base + "/cluster"}) {
		t.Errorf("shared %v", d.Shared)
	}
}

func TestNodeChangingZoneIsTold(t *testing.T) {
	e := engineWith(t, svc(), []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1", zones("a")), ep("10.1.0.3", "n3", zones("b")))}, testNodes...)
	if d := e.SetNode(node("n2", "a")); !d.Empty() {
		t.Errorf("unchanged node gave %+v", d)
	}
	d := e.SetNode(node("n2", "b"))
	if !slices.Equal(d.Nodes["n2"], []string{base + "/cluster"}) {
		t.Errorf("delta %+v", d)
	}
	if got := summaries(e, "n2")[base]; got != "internal=cluster FORWARD 10.1.0.3:8080" {
		t.Errorf("after the move n2 sees %s", got)
	}
}

func TestSameContentGivesEmptyDelta(t *testing.T) {
	e := engineWith(t, svc(), []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1"))}, testNodes...)
	if d := e.SetService(svc()); !d.Empty() {
		t.Errorf("re-setting the same service gave %+v", d)
	}
	if d := e.SetSlice(slice("web-1", ep("10.1.0.1", "n1"))); !d.Empty() {
		t.Errorf("re-setting the same slice gave %+v", d)
	}
}

func TestDeletingAServiceRemovesEverything(t *testing.T) {
	e := engineWith(t, svc(nodePort, etpLocal), []*model.EndpointSlice{slice("web-1", ep("10.1.0.1", "n1"))}, testNodes...)
	d := e.DeleteService(model.ServiceKey{Namespace: "default", Name: "web"})
	slices.Sort(d.Shared)
	if want := []string{base + "/cluster", base + "/local", base + "/service"}; !slices.Equal(d.Shared, want) {
		t.Errorf("shared %v want %v", d.Shared, want)
	}
	if len(e.NodeState("n1")) != 0 || e.ResourceCount() != 0 {
		t.Errorf("state left: %d resources", e.ResourceCount())
	}
}

func TestSliceMovingToAnotherServiceLeavesTheFirst(t *testing.T) {
	other := svc(func(s *model.Service) { s.Name = "api"; s.ClusterIPs = []netip.Addr{netip.MustParseAddr("10.96.0.11")} })
	e := engineWith(t, svc(), []*model.EndpointSlice{slice("shared-1", ep("10.1.0.1", "n1"))}, testNodes...)
	e.SetService(other)
	moved := slice("shared-1", ep("10.1.0.1", "n1"))
	moved.Service = "api"
	e.SetSlice(moved)
	got := summaries(e, "n1")
	if got[base] != "internal=cluster REJECT" || got["default/api:http/v4"] != "internal=cluster FORWARD 10.1.0.1:8080" {
		t.Errorf("after the move: %v", got)
	}
}

// randomCluster makes a small random cluster that exercises every rule: hints, policies, conditions.
type randomCluster struct {
	r     *rand.Rand
	nodes []string
	zones []string
}

func (rc randomCluster) service(i int) *model.Service {
	s := svc(func(s *model.Service) {
		s.Name = fmt.Sprintf("s%d", i)
		s.ClusterIPs = []netip.Addr{netip.AddrFrom4([4]byte{10, 96, 0, byte(i)})}
	})
	switch rc.r.IntN(4) {
	case 1:
		nodePort(s)
	case 2:
		loadBalancer("203.0.113.1")(s)
	}
	s.ExternalTrafficLocal = rc.r.IntN(2) == 0
	s.InternalTrafficLocal = rc.r.IntN(4) == 0
	return s
}

func (rc randomCluster) slice(svcIdx, n int) *model.EndpointSlice {
	hintZones, hintNodes := rc.r.IntN(2) == 0, rc.r.IntN(3) == 0
	var eps []model.Endpoint
	for j := range n {
		e := ep(fmt.Sprintf("10.1.%d.%d", svcIdx, j), rc.nodes[rc.r.IntN(len(rc.nodes))])
		switch rc.r.IntN(5) {
		case 0:
			notReady(&e)
		case 1:
			terminating(&e)
		}
		if hintZones && rc.r.IntN(8) != 0 {
			e.ForZones = []string{rc.zones[rc.r.IntN(len(rc.zones))]}
		}
		if hintNodes && rc.r.IntN(8) != 0 {
			e.ForNodes = []string{rc.nodes[rc.r.IntN(len(rc.nodes))]}
		}
		eps = append(eps, e)
	}
	sl := slice(fmt.Sprintf("s%d-1", svcIdx), eps...)
	sl.Service = fmt.Sprintf("s%d", svcIdx)
	return sl
}

// TestIncrementalEqualsFromScratch applies random changes one by one and checks, after each, that
// the delta named every resource that changed for every node, and that the state equals an engine
// built from scratch with the same model.
func TestIncrementalEqualsFromScratch(t *testing.T) {
	rc := randomCluster{r: rand.New(rand.NewPCG(3, 4)), nodes: []string{"n1", "n2", "n3", "n4"}, zones: []string{"a", "b", ""}}
	e := NewEngine(Options{})
	services := map[int]*model.Service{}
	sls := map[int]*model.EndpointSlice{}
	nodes := map[string]*model.Node{}
	observers := append(slices.Clone(rc.nodes), "unknown-node")
	for step := range 400 {
		before := map[string]map[string]string{}
		for _, n := range observers {
			before[n] = versions(e.NodeState(n))
		}
		i := rc.r.IntN(4)
		var d Delta
		switch rc.r.IntN(6) {
		case 0:
			services[i] = rc.service(i)
			d = e.SetService(services[i])
		case 1:
			delete(services, i)
			d = e.DeleteService(model.ServiceKey{Namespace: "default", Name: fmt.Sprintf("s%d", i)})
		case 2, 3:
			sls[i] = rc.slice(i, rc.r.IntN(6))
			d = e.SetSlice(sls[i])
		case 4:
			delete(sls, i)
			d = e.DeleteSlice(model.SliceKey{Namespace: "default", Name: fmt.Sprintf("s%d-1", i)})
		case 5:
			n := node(rc.nodes[rc.r.IntN(len(rc.nodes))], rc.zones[rc.r.IntN(len(rc.zones))])
			nodes[n.Name] = n
			d = e.SetNode(n)
		}
		fresh := NewEngine(Options{})
		for _, n := range nodes {
			fresh.SetNode(n)
		}
		for _, s := range services {
			fresh.SetService(s)
		}
		for _, sl := range sls {
			fresh.SetSlice(sl)
		}
		for _, n := range observers {
			after := versions(e.NodeState(n))
			if want := versions(fresh.NodeState(n)); fmt.Sprint(after) != fmt.Sprint(want) {
				t.Fatalf("step %d node %s: incremental state %v, from scratch %v", step, n, after, want)
			}
			dirty := map[string]bool{}
			for _, name := range append(append(slices.Clone(d.Shared), d.Zones[e.zoneOf(n)]...), d.Nodes[n]...) {
				dirty[name] = true
			}
			for name := range unionStrings(before[n], after) {
				if before[n][name] != after[name] && !dirty[name] {
					t.Fatalf("step %d node %s: %s changed but the delta %+v did not say so", step, n, name, d)
				}
			}
		}
	}
}

func versions(rs []*Resource) map[string]string {
	m := map[string]string{}
	for _, r := range rs {
		m[r.Name] = r.Version
	}
	return m
}

func unionStrings(a, b map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range a {
		out[k] = true
	}
	for k := range b {
		out[k] = true
	}
	return out
}

func TestVersionsDoNotDependOnInputOrder(t *testing.T) {
	eps := []model.Endpoint{ep("10.1.0.3", "n3"), ep("10.1.0.1", "n1"), ep("10.1.0.2", "n2", terminating)}
	a := engineWith(t, svc(nodePort), []*model.EndpointSlice{slice("web-1", eps...)})
	slices.Reverse(eps)
	b := engineWith(t, svc(nodePort), []*model.EndpointSlice{slice("web-1", eps...)})
	if va, vb := versions(a.NodeState("n1")), versions(b.NodeState("n1")); fmt.Sprint(va) != fmt.Sprint(vb) {
		t.Errorf("versions differ with endpoint order: %v vs %v", va, vb)
	}
}
