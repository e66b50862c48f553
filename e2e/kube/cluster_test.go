package kube

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
	agentstream "github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

// brainIPs are the two brain replicas' addresses on the fabric. Agents choose their replica from
// their node name and these addresses (preferredReplica); .3 makes that choice put nodes on both
// replicas (node-1 and node-3 on the first, node-2 on the second), where .2 happens to put all
// three on one. The tests compute who is where, so any address works; this one tests more.
var brainIPs = []string{netlab.FabricIP, "192.168.77.3"}

const (
	nodes      = 3
	deployNS   = "ganglion-system"
	brainSA    = "ganglion-controlplane"
	agentSA    = "ganglion-agent"
	brainPort  = "7070"
	metricPort = "7071"
	healthPort = "7072"
	// brainName is the name in the brain's certificate that agents check, as deploy/'s
	// DaemonSet passes it in --brain-server-name; the addresses they dial need not be in it.
	brainName = "ganglion-controlplane." + deployNS + ".svc"
	// tokenAudience is the audience of the agents' projected tokens, as deploy/ sets it.
	tokenAudience = "ganglion"
)

// cluster is the lab, the API server, two brains and an agent per node.
type cluster struct {
	// t is the test or subtest running now; top is the whole test, which owns the processes.
	t, top *testing.T
	mu     sync.Mutex
	conns  map[string]*grpc.ClientConn
	lab    *netlab.Lab
	api    *apiServer
	pki    *testpki.PKI
	// brainTLS are the brains' certificate flags, issued once for brainName and every address.
	brainTLS []string
	bin      string
	brains   []*proc.Proc
	agents   []*proc.Proc
}

func newCluster(t *testing.T) *cluster {
	bins := requireBins(t)
	c := &cluster{t: t, top: t, lab: netlab.NewLab(t, netlab.LabOptions{Nodes: nodes, FabricIPs: brainIPs[1:]}), bin: proc.Binaries(t), pki: testpki.New(t)}
	c.api = startAPIServer(t, bins, c.lab.Fabric)
	c.brainTLS = c.pki.BrainFlags(append([]string{brainName}, brainIPs...)...)
	return c
}

func nodeName(i int) string { return fmt.Sprintf("node-%d", i) }

// createNodes registers the lab's nodes, as kubelets would.
func (c *cluster) createNodes() {
	for i := 1; i <= nodes; i++ {
		n := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: nodeName(i)},
			Status: corev1.NodeStatus{
				Addresses:  []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: netlab.LabNodeIP(i)}},
				Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}},
			},
		}
		if _, err := c.api.client.CoreV1().Nodes().Create(context.Background(), n, metav1.CreateOptions{}); err != nil {
			c.t.Fatalf("create node: %v", err)
		}
	}
}

// brainToken is a token of the controlplane's own ServiceAccount from deploy/: the brains run
// with exactly the RBAC the manifests grant.
func (c *cluster) brainToken() string { return c.token(brainSA) }

// token returns a token of deploy/'s ServiceAccount sa.
func (c *cluster) token(sa string) string {
	tr, err := c.api.client.CoreV1().ServiceAccounts(deployNS).CreateToken(context.Background(), sa,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("token for %s/%s (apply deploy/ first): %v", deployNS, sa, err)
	}
	return tr.Status.Token
}

// startBrains starts, for the whole test, both replicas in the fabric with --source=kubernetes: the first configured
// in-cluster, exactly as deploy/'s Deployment runs it, the second with --kubeconfig. Both serve
// TLS with a certificate for brainName and their addresses, and accept the agents' tokens.
func (c *cluster) startBrains() {
	token := c.brainToken()
	announce := c.announceConfig()
	serve := func(ip string) []string {
		return c.serveArgs(ip, brainPort, "--metrics-listen", net.JoinHostPort(ip, metricPort), "--announce-config", announce)
	}
	c.brains = append(c.brains, proc.Start(c.top, c.inCluster(token, serve(brainIPs[0]))...))
	c.brains = append(c.brains, proc.Start(c.top, c.lab.Fabric.Command(append(serve(brainIPs[1]), "--kubeconfig", c.api.kubeconfig("brain", token))...)...))
}

// serveArgs is a secured brain on ip:port: its certificate (brainName and every brain address)
// and the flags of deploy/'s Deployment, with the health port on ip too (both replicas share the
// fabric, where a Deployment's replicas would each have a node).
func (c *cluster) serveArgs(ip, port string, more ...string) []string {
	args := []string{filepath.Join(c.bin, "ganglion-controlplane"), "serve", "--source", "kubernetes",
		"--listen", net.JoinHostPort(ip, port), "--health-listen", net.JoinHostPort(ip, healthPort),
		"--token-audience", tokenAudience, "--agent-service-account", deployNS + "/" + agentSA}
	args = append(args, c.brainTLS...)
	return append(args, more...)
}

// inCluster returns the argv that runs argv in the fabric as a pod with the controlplane's
// ServiceAccount would see the world: its token and CA at the well-known path (in a private
// mount namespace, on a tmpfs over /run, so the host is untouched), and the API server's address
// in KUBERNETES_SERVICE_HOST/PORT, as the Deployment sets them.
func (c *cluster) inCluster(token string, argv []string) []string {
	dir := c.top.TempDir()
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token), 0o600); err != nil {
		c.t.Fatal(err)
	}
	const script = `set -e
mount -t tmpfs tmpfs /run
sa=/var/run/secrets/kubernetes.io/serviceaccount
mkdir -p "$sa"
cp "$1" "$sa/token"; cp "$2" "$sa/ca.crt"; echo ` + deployNS + ` > "$sa/namespace"
shift 2
exec "$@"`
	return c.lab.Fabric.Command(append([]string{"env", "KUBERNETES_SERVICE_HOST=" + apiServerHost, "KUBERNETES_SERVICE_PORT=" + apiServerPort,
		"unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", tokenFile, c.api.caFile()}, argv...)...)
}

// brainList is the brain list every agent is given, as one ConfigMap gives it to the DaemonSet:
// which replica serves which node is the agents' own choice (preferredReplica).
func brainList() string { return strings.Join(brainAddrs(), ",") }

func brainAddrs() []string {
	out := make([]string, len(brainIPs))
	for r, ip := range brainIPs {
		out[r] = net.JoinHostPort(ip, brainPort)
	}
	return out
}

// preferredReplica is the replica node i's agent starts on and returns to, computed by the
// agent's own function rather than assumed from list order.
func preferredReplica(i int) int {
	return slices.Index(brainAddrs(), agentstream.Order(nodeName(i), brainAddrs())[0])
}

// startAgents runs every node's agent with the nftables dataplane in its namespace. Its node
// name and brains come from the environment, as the DaemonSet gives them (downward API and
// ConfigMap), and it authenticates as the DaemonSet's pods do: with a token of the agents'
// ServiceAccount for the brains' audience, bound to a pod scheduled on its node.
func (c *cluster) startAgents() {
	for i := 1; i <= nodes; i++ {
		pod := c.createPod("agent-"+nodeName(i), nodeName(i), agentSA)
		tokenFile := c.writeToken(c.boundToken(agentSA, pod, tokenAudience, 3600))
		c.agents = append(c.agents, proc.Start(c.top, c.lab.Nodes[i-1].NS.Command("env", "NODE_NAME="+nodeName(i), "GANGLION_BRAIN="+brainList(),
			filepath.Join(c.bin, "ganglion-agent"), "--dataplane", "nftables",
			"--node-ip", netlab.LabNodeIP(i), "--pod-cidr", netlab.LabPodCIDR(i),
			"--healthz-bind-address", netlab.LabNodeIP(i)+":10256", "--metrics-bind-address", "127.0.0.1:10249",
			"--reconcile-interval", "500ms",
			"--token-file", tokenFile, "--tls-ca", c.pki.CAFile, "--brain-server-name", brainName)...))
	}
}

// svc describes a service the tests create.
type svc struct {
	name, clusterIP string
	nodePort        int32
	labels          map[string]string
}

func (c *cluster) createService(s svc) {
	c.t.Helper()
	obj := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: s.name, Labels: s.labels},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeClusterIP, ClusterIP: s.clusterIP,
			Ports: []corev1.ServicePort{{Name: "p", Port: 80, Protocol: corev1.ProtocolTCP}},
		},
	}
	if s.nodePort != 0 {
		obj.Spec.Type = corev1.ServiceTypeNodePort
		obj.Spec.Ports[0].NodePort = s.nodePort
	}
	if _, err := c.api.client.CoreV1().Services("default").Create(context.Background(), obj, metav1.CreateOptions{}); err != nil {
		c.t.Fatalf("create service %s: %v", s.name, err)
	}
}

// ep is one pod behind a service: pod k (0-based) of node n (1-based).
type ep struct {
	node, pod int
	notReady  bool
}

func (e ep) name() string { return netlab.LabPodName(e.node, e.pod) }

// setEndpoints creates or replaces the service's one EndpointSlice, as the EndpointSlice
// controller would (there is none here), trigger-time annotation included.
func (c *cluster) setEndpoints(service string, eps ...ep) {
	c.t.Helper()
	c.setEndpointsAt(service, time.Now(), eps...)
}

// setEndpointsAt is setEndpoints with the change's trigger time.
func (c *cluster) setEndpointsAt(service string, trigger time.Time, eps ...ep) {
	c.t.Helper()
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: service + "-e2e",
			Labels:      map[string]string{discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "e2e.ganglion-proxy.io"},
			Annotations: map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": trigger.UTC().Format(time.RFC3339Nano)},
		},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("p"), Port: ptr.To[int32](netlab.PodPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, e := range eps {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{netlab.LabPodIP(e.node, e.pod)},
			NodeName:   ptr.To(nodeName(e.node)),
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(!e.notReady)},
		})
	}
	slices := c.api.client.DiscoveryV1().EndpointSlices("default")
	cur, err := slices.Get(context.Background(), sl.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = slices.Create(context.Background(), sl, metav1.CreateOptions{})
	case err == nil:
		sl.ResourceVersion = cur.ResourceVersion
		_, err = slices.Update(context.Background(), sl, metav1.UpdateOptions{})
	}
	if err != nil {
		c.t.Fatalf("endpoints of %s: %v", service, err)
	}
}

// kubectl runs the pinned kubectl in the fabric as the admin.
func (c *cluster) kubectl(args ...string) (string, error) {
	kc := c.api.kubeconfig("admin", c.api.adminToken)
	argv := c.lab.Fabric.Command(append([]string{c.api.bins.kubectl, "--kubeconfig", kc}, args...)...)
	cmd := exec.Command(argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		// Warnings go to stderr too: only show them when something failed.
		stdout.Write(stderr.Bytes())
	}
	return strings.TrimSpace(stdout.String()), err
}
