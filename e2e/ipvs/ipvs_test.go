// Package ipvs is the end-to-end test of the IPVS dataplane. The host kernel has no IPVS, so
// TestIPVSInVM boots a VM (e2e/vm) and runs this package's TestVM* tests inside it, where the
// VM's root namespace is the node and namespaces are its pods, a second node and an external
// client. BenchmarkIPVSInVM does the same for TestVMBench and prints its BENCH line.
package ipvs

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/vm"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/ipvs"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if vm.Inside() {
		teardownTopology()
	}
	os.Exit(code)
}

// TestIPVSInVM boots the VM and runs every TestVM* case in it.
func TestIPVSInVM(t *testing.T) {
	if vm.Inside() {
		t.Skip("the outer test does not nest")
	}
	vm.RunGoTest(t, vm.GoTest{Run: "^TestVM", Timeout: 6 * time.Minute})
}

var benchRe = regexp.MustCompile(`(?m)^BENCH ipvs .*$`)

// BenchmarkIPVSInVM runs TestVMBench in the VM and prints its BENCH line.
func BenchmarkIPVSInVM(b *testing.B) {
	if vm.Inside() {
		b.Skip("the outer benchmark does not nest")
	}
	res := vm.RunGoTest(b, vm.GoTest{Run: "^TestVMBench$", Env: map[string]string{benchEnv: "1"}, Timeout: 15 * time.Minute})
	line := benchRe.FindString(res.Log)
	if line == "" {
		b.Fatalf("no BENCH line in the guest's output:\n%s", res.Log)
	}
	fmt.Println(line)
}

// guest prepares a test running in the VM: the topology, and a fresh dataplane that is pruned
// empty and closed at the end.
func guest(t *testing.T) (*topology, *ipvs.Dataplane) {
	t.Helper()
	vm.RequireInside(t)
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "ipvsadm")
	tp := setupTopology(t)
	return tp, newDataplane(t, tp, true)
}

func newDataplane(t *testing.T, tp *topology, cleanup bool) *ipvs.Dataplane {
	t.Helper()
	return newDataplaneWith(t, ipvs.Options{Node: tp.node, DrainInterval: 200 * time.Millisecond}, cleanup)
}

func newDataplaneWith(t *testing.T, opts ipvs.Options, cleanup bool) *ipvs.Dataplane {
	t.Helper()
	d, err := ipvs.New(context.Background(), opts)
	if err != nil {
		t.Fatalf("ipvs.New: %v", err)
	}
	if cleanup {
		t.Cleanup(func() {
			if err := d.Prune(context.Background(), nil); err != nil {
				t.Errorf("Prune: %v", err)
			}
			d.Close()
		})
	}
	return d
}

// svc describes a test service; backends are pod names.
type svc struct {
	name      string
	v6        bool
	udp       bool
	clusterIP string
	nodePort  uint32
	sched     string
	affinity  bool
	etpLocal  bool
	cluster   []string
	local     []string
	reject    bool
	// lb is a load-balancer IP (ETP Cluster) allowing only ranges when they are set.
	lb     string
	ranges []string
	// weights overrides the weight (1) of some backends.
	weights map[string]uint32
}

func (s svc) base() string { return "e2e/" + s.name + "/v4" }

func (tp *topology) set(names []string, v6 bool, empty v1.TrafficAction, weights map[string]uint32) *v1.EndpointSet {
	if len(names) == 0 {
		return &v1.EndpointSet{Action: empty}
	}
	es := &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_FORWARD}
	for _, n := range names {
		a := tp.pods[n].addr
		if v6 {
			a = tp.pods[n].addr6
		}
		w := weights[n]
		if w == 0 {
			w = 1
		}
		es.Backends = append(es.Backends, &v1.Backend{Address: a.String(), Port: serverPort, Weight: w})
	}
	return es
}

func (tp *topology) port(s svc) dataplane.Port {
	proto := v1.Protocol_PROTOCOL_TCP
	if s.udp {
		proto = v1.Protocol_PROTOCOL_UDP
	}
	fam := v1.IPFamily_IP_FAMILY_IPV4
	if s.v6 {
		fam = v1.IPFamily_IP_FAMILY_IPV6
	}
	sp := &v1.ServicePort{
		Namespace: "e2e", Name: s.name, Family: fam, Protocol: proto, Scheduler: s.sched,
		Frontends: []*v1.Frontend{{Kind: v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP, Address: s.clusterIP, Port: 80}},
		Internal:  &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER},
	}
	if s.affinity {
		sp.SessionAffinity = &v1.SessionAffinity{TimeoutSeconds: 60}
	}
	p := dataplane.Port{Base: s.base(), Service: sp}
	if s.reject {
		p.Cluster = &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_REJECT}
		return p
	}
	p.Cluster = tp.set(s.cluster, s.v6, v1.TrafficAction_TRAFFIC_ACTION_REJECT, s.weights)
	if s.lb != "" {
		sp.Frontends = append(sp.Frontends, &v1.Frontend{Kind: v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER, Address: s.lb, Port: 80, SourceRanges: s.ranges})
		sp.External = &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER, Masquerade: true}
	}
	if s.nodePort != 0 {
		sp.Frontends = append(sp.Frontends, &v1.Frontend{Kind: v1.FrontendKind_FRONTEND_KIND_NODE_PORT, Port: s.nodePort})
		sp.External = &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER, Masquerade: true}
		if s.etpLocal {
			sp.External = &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_LOCAL}
			p.Local = tp.set(s.local, s.v6, v1.TrafficAction_TRAFFIC_ACTION_DROP, s.weights)
		}
	}
	return p
}

func applyAll(t *testing.T, d *ipvs.Dataplane, ports ...dataplane.Port) {
	t.Helper()
	if errs := d.Apply(context.Background(), dataplane.Change{Upserts: ports}); len(errs) > 0 {
		t.Fatalf("Apply: %v", errs)
	}
}

// spread makes n fresh requests from p and counts the backends that answered.
func spread(t *testing.T, p *pod, network, addr string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		b, _, err := p.request(network, addr)
		if err != nil {
			t.Fatalf("%s request from %s to %s: %v", network, p.name, addr, err)
		}
		seen[b]++
	}
	return seen
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// realServerWeight reads a real server's weight with ipvsadm, the way an operator would look.
func realServerWeight(t *testing.T, vs, rs string) (int, bool) {
	t.Helper()
	out, err := exec.Command("ipvsadm", "-Ln", "-t", vs).CombinedOutput()
	if err != nil {
		t.Fatalf("ipvsadm -Ln -t %s: %v: %s", vs, err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) >= 4 && f[0] == "->" && f[1] == rs {
			var w int
			fmt.Sscan(f[3], &w)
			return w, true
		}
	}
	return 0, false
}
