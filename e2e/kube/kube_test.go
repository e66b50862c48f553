package kube

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
)

// eventually polls cond; its deadline (e2e/proc's) guards against hangs and asserts no timing.
func (c *cluster) eventually(what string, cond func() bool) {
	c.t.Helper()
	proc.Eventually(c.t, what, cond)
}

// run runs fn as a subtest with c.t set to it, and back to the whole test after: helpers fail
// the case they are called from, while processes stay owned by the whole test (c.top).
func (c *cluster) run(name string, fn func(*testing.T)) bool {
	return c.top.Run(name, func(t *testing.T) {
		c.t = t
		defer func() { c.t = c.top }()
		fn(t)
	})
}

// TestKubernetesMode runs every case against one API server, one lab and one pair of brains:
// starting them is most of the cost, and each case leaves the others' services alone.
func TestKubernetesMode(t *testing.T) {
	c := newCluster(t)
	if !c.run("manifests pass a server-side dry run and apply", c.testManifests) {
		t.FailNow() // the brains run as the ServiceAccount the manifests create
	}
	c.createNodes()
	c.run("a brain that may not read the API never serves", c.testNoAccess)
	c.startBrains()
	c.eventually("both brains synced (SERVING)", func() bool { return c.serving(0) && c.serving(1) })
	c.startAgents()
	for i := 1; i <= nodes; i++ {
		replica := preferredReplica(i)
		c.eventually(fmt.Sprintf("%s synced on brain %d", nodeName(i), replica), func() bool { return c.inSync(replica, nodeName(i)) })
	}

	c.run("ClusterIP service", c.testClusterIP)
	c.run("NodePort service", c.testNodePort)
	c.run("scaling endpoints up and down reaches every node", c.testScale)
	c.run("a not ready endpoint gets no new connections", c.testNotReady)
	c.run("a service labelled for another proxy is left alone", c.testOtherProxy)
	c.run("a load balancer of our class is reached from outside over ARP; another class is left alone", c.testAnnounce)
	c.run("headless and ExternalName services reach agents that serve DNS, and only them", c.testDNSRecords)
	c.run("a token bound to a pod on node A cannot open node B's stream", c.testTokenNodeBinding)
	c.run("a token for another audience is refused", c.testTokenAudience)
	c.run("an expired token is refused", c.testTokenExpired)
	c.run("a token whose pod was deleted is refused", c.testTokenRevoked)
	c.run("a token of another ServiceAccount is refused", c.testTokenOtherServiceAccount)
	c.run("a token bound to no pod, or none at all, is refused", c.testTokenUnbound)
	c.run("killing a brain moves its agents without a full resend or lost traffic", c.testFailover)
}

// testManifests dry-runs every kustomization in deploy/ on the server, then applies the nftables
// overlay for real: its ServiceAccount and RBAC are what the brains run with.
func (c *cluster) testManifests(t *testing.T) {
	deploy := filepath.Join(repoRoot(), "deploy")
	// Namespaced objects cannot be dry-run into a namespace that does not exist yet.
	if out, err := c.kubectl("create", "namespace", deployNS, "--save-config"); err != nil {
		t.Fatalf("create namespace: %v\n%s", err, out)
	}
	for _, k := range []string{"base", "overlays/nftables", "overlays/ipvs"} {
		out, err := c.kubectl("apply", "--dry-run=server", "-k", filepath.Join(deploy, k))
		if err != nil {
			t.Errorf("deploy/%s: server-side dry run: %v\n%s", k, err, out)
			continue
		}
		t.Logf("deploy/%s (dry run):\n%s", k, out)
	}
	if out, err := c.kubectl("apply", "-k", filepath.Join(deploy, "overlays/nftables")); err != nil {
		t.Fatalf("apply deploy/overlays/nftables: %v\n%s", err, out)
	}
	c.checkSecuredManifests(t)
	// What the manifests grant is what the brain needs, and not more.
	for verb, want := range map[string]string{
		"list services": "yes", "watch endpointslices.discovery.k8s.io": "yes", "watch nodes": "yes",
		"create services": "no", "list secrets": "no", "update endpointslices.discovery.k8s.io": "no",
		// How it checks the agents' tokens.
		"create tokenreviews.authentication.k8s.io": "yes",
	} {
		args := append([]string{"auth", "can-i"}, strings.Fields(verb)...)
		args = append(args, "--as", "system:serviceaccount:"+deployNS+":"+brainSA)
		out, _ := c.kubectl(args...)
		if out != want {
			t.Errorf("controlplane can %s: %q, want %q", verb, out, want)
		}
	}
	for _, verb := range []string{"list services", "create tokenreviews.authentication.k8s.io"} {
		args := append([]string{"auth", "can-i"}, strings.Fields(verb)...)
		out, _ := c.kubectl(append(args, "--as", "system:serviceaccount:"+deployNS+":"+agentSA)...)
		// On "no", kubectl exits 1 and c.kubectl adds its warnings (cluster-scoped resources).
		if out, _, _ = strings.Cut(out, "\n"); out != "no" {
			t.Errorf("agent can %s: %q, want no: the agent needs no API access", verb, out)
		}
	}
}

// testNoAccess runs a brain with the agent's ServiceAccount, which deploy/ grants nothing: it
// must say so in its log at the default level and stay NOT_SERVING, so no agent ever takes the
// empty state of a brain that has read nothing.
func (c *cluster) testNoAccess(t *testing.T) {
	addr := net.JoinHostPort(brainIPs[0], "7090")
	b := proc.Start(t, c.lab.Fabric.Command(c.serveArgs(brainIPs[0], "7090",
		"--kubeconfig", c.api.kubeconfig("agent", c.token(agentSA)), "--metrics-listen", "", "--health-listen", "")...)...)
	c.eventually("the brain reports its failed lists", func() bool {
		out := b.Output()
		return strings.Contains(out, "list/watch failed") && strings.Contains(out, "forbidden")
	})
	if got := c.health(addr); got != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("health of a brain that could not list = %v, want NOT_SERVING", got)
	}
	b.Stop()
}

func (c *cluster) testClusterIP(t *testing.T) {
	c.createService(svc{name: "web", clusterIP: "10.96.0.10"})
	c.setEndpoints("web", ep{node: 1, pod: 0}, ep{node: 2, pod: 0})
	c.eventuallyServed("web", "10.96.0.10", 0, "pod1a", "pod2a")
	// From a pod as well as from the node.
	pod := c.lab.Nodes[2].Pods[1]
	c.eventually("web from a pod on node-3", func() bool { return servedBy(pod, "10.96.0.10:80", "pod1a", "pod2a") })
}

func (c *cluster) testNodePort(t *testing.T) {
	c.createService(svc{name: "np", clusterIP: "10.96.0.11", nodePort: 30080})
	// The slice says its change began an hour ago: the end-to-end programming latency, measured
	// from the EndpointSlice's trigger-time annotation, must then include that hour.
	const metric = "ganglion_network_programming_duration_seconds_sum"
	before := c.metric(0, metric) + c.metric(1, metric)
	c.setEndpointsAt("np", time.Now().Add(-time.Hour), ep{node: 3, pod: 0})
	c.eventuallyServed("np", "10.96.0.11", 30080, "pod3a")
	c.eventually("programming latency counted from the trigger-time annotation", func() bool {
		return c.metric(0, metric)+c.metric(1, metric)-before >= time.Hour.Seconds()
	})
}

func (c *cluster) testScale(t *testing.T) {
	c.createService(svc{name: "scale", clusterIP: "10.96.0.12", nodePort: 30081})
	c.setEndpoints("scale", ep{node: 1, pod: 1})
	c.eventuallyServed("one endpoint", "10.96.0.12", 30081, "pod1b")

	var all []ep
	var names []string
	for i := 1; i <= nodes; i++ {
		for k := range 2 {
			all = append(all, ep{node: i, pod: k})
			names = append(names, netlab.LabPodName(i, k))
		}
	}
	c.setEndpoints("scale", all...)
	c.eventuallyServed("scaled up to six", "10.96.0.12", 30081, names...)

	c.setEndpoints("scale", ep{node: 2, pod: 1}, ep{node: 3, pod: 1})
	c.eventuallyServed("scaled down to two", "10.96.0.12", 30081, "pod2b", "pod3b")
}

func (c *cluster) testNotReady(t *testing.T) {
	c.createService(svc{name: "ready", clusterIP: "10.96.0.13"})
	c.setEndpoints("ready", ep{node: 1, pod: 0}, ep{node: 2, pod: 1}, ep{node: 3, pod: 0})
	c.eventuallyServed("three ready", "10.96.0.13", 0, "pod1a", "pod2b", "pod3a")
	c.setEndpoints("ready", ep{node: 1, pod: 0}, ep{node: 2, pod: 1, notReady: true}, ep{node: 3, pod: 0})
	c.eventuallyServed("pod2b not ready", "10.96.0.13", 0, "pod1a", "pod3a")
}

func (c *cluster) testOtherProxy(t *testing.T) {
	other := map[string]string{compute.LabelServiceProxyName: "someone-else"}
	c.createService(svc{name: "theirs", clusterIP: "10.96.0.14", labels: other})
	c.setEndpoints("theirs", ep{node: 1, pod: 0})
	// A service created after theirs, served everywhere, shows the brains have read past it.
	c.createService(svc{name: "marker", clusterIP: "10.96.0.15"})
	c.setEndpoints("marker", ep{node: 2, pod: 0})
	c.eventuallyServed("marker", "10.96.0.15", 0, "pod2a")
	for i := 1; i <= nodes; i++ {
		for r := range brainIPs {
			for _, name := range c.stateNames(r, nodeName(i)) {
				if strings.HasPrefix(name, "default/theirs") {
					t.Errorf("brain %d gives %s a resource of a service labelled for another proxy: %s", r, nodeName(i), name)
				}
			}
		}
		if g, err := c.lab.Nodes[i-1].NS.AskTCP("10.96.0.14:80"); err == nil {
			t.Errorf("%s reached %q through the ClusterIP of a service labelled for another proxy", nodeName(i), g)
		}
	}

	// A service of ours relabelled for another proxy is let go: its rules are removed.
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:"someone-else"}}}`, compute.LabelServiceProxyName)
	if _, err := c.api.client.CoreV1().Services("default").Patch(context.Background(), "marker", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= nodes; i++ {
		node := c.lab.Nodes[i-1].NS
		c.eventually("relabelled marker let go on "+nodeName(i), func() bool {
			_, err := node.AskTCP("10.96.0.15:80")
			return err != nil
		})
	}
}

// testFailover kills the brain node 1 prefers (SIGKILL) while traffic flows through the nodes it
// serves, and checks that they resume on the other with nothing resent and no connection lost,
// and that only they move.
func (c *cluster) testFailover(t *testing.T) {
	c.createService(svc{name: "steady", clusterIP: "10.96.0.16", nodePort: 30082})
	c.setEndpoints("steady", ep{node: 1, pod: 1}, ep{node: 2, pod: 0}, ep{node: 3, pod: 1})
	c.eventuallyServed("steady", "10.96.0.16", 30082, "pod1b", "pod2a", "pod3b")
	victim := preferredReplica(1)
	survivor := 1 - victim
	var moving []int // the nodes the victim serves: the agents' own choice, node 1 among them
	for i := 1; i <= nodes; i++ {
		if preferredReplica(i) == victim {
			moving = append(moving, i)
		}
	}
	for _, i := range moving {
		c.eventually(fmt.Sprintf("%s in sync on brain %d", nodeName(i), victim), func() bool { return c.inSync(victim, nodeName(i)) })
	}
	held := 0
	for _, i := range moving {
		held += len(c.stateNames(survivor, nodeName(i)))
	}
	sentBefore := c.metric(survivor, "ganglion_update_resources_total")
	snapshotsBefore := c.metric(survivor, "ganglion_snapshots_total")

	// Traffic through both moving nodes, from outside and from the nodes themselves, until the
	// move is over. Every attempt must succeed: the agents keep their rules without a brain.
	var attempts, failures atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, i := range moving {
		for _, from := range []*netlab.NS{c.lab.Client, c.lab.Nodes[i-1].NS} {
			addr := fmt.Sprintf("%s:30082", netlab.LabNodeIP(i))
			if from != c.lab.Client {
				addr = "10.96.0.16:80"
			}
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					attempts.Add(1)
					if _, err := from.AskTCP(addr); err != nil {
						failures.Add(1)
						firstErr.CompareAndSwap(nil, fmt.Sprintf("%s: %v", addr, err))
					}
				}
			})
		}
	}
	c.brains[victim].Kill()
	for _, i := range moving {
		c.eventually(fmt.Sprintf("%s moved to brain %d and in sync", nodeName(i), survivor), func() bool { return c.inSync(survivor, nodeName(i)) })
	}
	close(stop)
	wg.Wait()

	if f := failures.Load(); f > 0 {
		t.Errorf("%d of %d connections failed while the agents moved; first: %v", f, attempts.Load(), firstErr.Load())
	}
	resent := c.metric(survivor, "ganglion_update_resources_total") - sentBefore
	snapshots := c.metric(survivor, "ganglion_snapshots_total") - snapshotsBefore
	t.Logf("failover: %d connections, brain %d sent %v resources for %d snapshots; the moving agents hold %d",
		attempts.Load(), survivor, resent, int(snapshots), held)
	if resent >= float64(held) {
		t.Errorf("brain %d sent %v resources to agents holding %d: a full resend", survivor, resent, held)
	}
	// One resume per moving agent and no more: the survivor's own agents kept their streams.
	if snapshots != float64(len(moving)) {
		t.Errorf("brain %d answered %v resumes, want %d (nodes %v moved)", survivor, snapshots, len(moving), moving)
	}

	// The survivor drives them: a change made now reaches the nodes that moved.
	c.setEndpoints("steady", ep{node: 1, pod: 1}, ep{node: 3, pod: 1})
	for _, i := range moving {
		node := c.lab.Nodes[i-1].NS
		c.eventually("change after failover on "+nodeName(i), func() bool { return servedBy(node, "10.96.0.16:80", "pod1b", "pod3b") })
	}
}
