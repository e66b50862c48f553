package nft

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
)

// The lab: a fabric namespace with a bridge (192.168.77.0/24) where the brain runs; three node
// namespaces on it, each with a pod bridge (10.244.<i>.0/24) and two pods; an outside client that
// routes the load balancer IP to node 1, as an upstream router would. Pod CIDRs are routed between
// nodes over the fabric (host-gw style).
const (
	brainIP  = "192.168.77.1"
	clientIP = "192.168.77.100"
	lbIP     = "203.0.113.10"
	podPort  = 8080
	nodes    = 3
)

func nodeIP(i int) string     { return fmt.Sprintf("192.168.77.1%d", i) }
func podIP(i, k int) string   { return fmt.Sprintf("10.244.%d.1%d", i, k) }
func podName(i, k int) string { return fmt.Sprintf("pod%d%c", i, 'a'+k) }

type node struct {
	ns    *netlab.NS
	pods  []*netlab.NS
	agent *proc.Proc
}

type cluster struct {
	t         *testing.T
	bin       string
	fabric    *netlab.NS
	client    *netlab.NS
	nodes     []*node // nodes[0] is node-1
	manifests string
	brain     *proc.Proc
}

func newCluster(t *testing.T) *cluster {
	netlab.Require(t)
	id := netlab.UniqueID()
	c := &cluster{t: t, bin: proc.Binaries(t), manifests: filepath.Join(t.TempDir(), "cluster.yaml")}
	c.fabric = netlab.NewNS(t, "gx"+id+"f")
	c.fabric.Run(t, "ip", "link", "add", "br0", "type", "bridge")
	c.fabric.Run(t, "ip", "addr", "add", brainIP+"/24", "dev", "br0")
	c.fabric.Run(t, "ip", "link", "set", "br0", "up")
	attach := func(ns *netlab.NS, port, ip string) {
		c.fabric.Run(t, "ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.Name)
		c.fabric.Run(t, "ip", "link", "set", port, "master", "br0", "up")
		ns.Run(t, "ip", "addr", "add", ip+"/24", "dev", "eth0")
		ns.Run(t, "ip", "link", "set", "eth0", "up")
	}
	for i := 1; i <= nodes; i++ {
		n := &node{ns: netlab.NewNS(t, fmt.Sprintf("gx%sn%d", id, i))}
		attach(n.ns, fmt.Sprintf("vn%d", i), nodeIP(i))
		n.ns.Run(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
		// Like any real node, a default route: traffic to a ClusterIP must reach the forward
		// hook (where a service without endpoints is rejected) rather than fail routing.
		n.ns.Run(t, "ip", "route", "add", "default", "via", brainIP)
		n.ns.Run(t, "ip", "link", "add", "cbr0", "type", "bridge")
		n.ns.Run(t, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/24", i), "dev", "cbr0")
		n.ns.Run(t, "ip", "link", "set", "cbr0", "up")
		for k := range 2 {
			pod := netlab.NewNS(t, fmt.Sprintf("gx%sp%d%d", id, i, k))
			veth := fmt.Sprintf("veth%d", k)
			n.ns.Run(t, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", pod.Name)
			n.ns.Run(t, "ip", "link", "set", veth, "master", "cbr0", "up")
			// As the CNI bridge plugin does with hairpinMode: with br_netfilter loaded, a pod's
			// packet DNATed back to itself is bridged out of the port it came in on.
			n.ns.Run(t, "ip", "link", "set", veth, "type", "bridge_slave", "hairpin", "on")
			pod.Run(t, "ip", "addr", "add", podIP(i, k)+"/24", "dev", "eth0")
			pod.Run(t, "ip", "link", "set", "eth0", "up")
			pod.Run(t, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i))
			pod.Serve(t, podName(i, k), podPort)
			n.pods = append(n.pods, pod)
		}
		for j := 1; j <= nodes; j++ {
			if j != i {
				n.ns.Run(t, "ip", "route", "add", fmt.Sprintf("10.244.%d.0/24", j), "via", nodeIP(j))
			}
		}
		c.nodes = append(c.nodes, n)
	}
	c.client = netlab.NewNS(t, "gx"+id+"c")
	attach(c.client, "vc", clientIP)
	c.client.Run(t, "ip", "route", "add", lbIP+"/32", "via", nodeIP(1))
	return c
}

// pod returns pod k of node i (1-based node).
func (c *cluster) pod(i, k int) *netlab.NS { return c.nodes[i-1].pods[k] }

// write renders the manifests; the brain re-reads them when they change.
func (c *cluster) write(m manifests) {
	c.t.Helper()
	var b bytes.Buffer
	if err := manifestsTmpl.Execute(&b, m); err != nil {
		c.t.Fatal(err)
	}
	tmp := c.manifests + ".tmp"
	if err := os.WriteFile(tmp, b.Bytes(), 0o644); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Rename(tmp, c.manifests); err != nil {
		c.t.Fatal(err)
	}
}

// startBrain runs the brain in the fabric namespace.
func (c *cluster) startBrain() {
	c.brain = proc.Start(c.t, c.fabric.Command(filepath.Join(c.bin, "ganglion-controlplane"), "serve",
		"--manifests", c.manifests, "--listen", brainIP+":7070", "--metrics-listen", "")...)
}

// startAgent runs node i's agent with the nftables dataplane in its namespace.
func (c *cluster) startAgent(i int) {
	c.nodes[i-1].agent = proc.Start(c.t, c.nodes[i-1].ns.Command(filepath.Join(c.bin, "ganglion-agent"),
		"--node-name", fmt.Sprintf("node-%d", i), "--brain", brainIP+":7070", "--dataplane", "nftables",
		"--node-ip", nodeIP(i), "--pod-cidr", fmt.Sprintf("10.244.%d.0/24", i),
		"--healthz-bind-address", nodeIP(i)+":10256", "--metrics-bind-address", "127.0.0.1:10249",
		"--reconcile-interval", "500ms")...)
}

// endpoint is one pod behind a service.
type endpoint struct {
	Node, Pod int // 1-based node, 0-based pod
	NotReady  bool
}

func (e endpoint) IP() string { return podIP(e.Node, e.Pod) }

// service is one service of the lab's manifests.
type service struct {
	Name, ClusterIP, Type, ETP, ITP, Affinity string
	Port, NodePort                            int
	Protocol                                  string
	LBIP                                      string
	Endpoints                                 []endpoint
}

type manifests struct{ Services []service }

var manifestsTmpl = template.Must(template.New("m").Funcs(template.FuncMap{
	"nodeIP": nodeIP, "seq": func() []int { return []int{1, 2, 3} },
	"lower": strings.ToLower,
}).Parse(`{{range seq}}apiVersion: v1
kind: Node
metadata: {name: node-{{.}}}
status: {addresses: [{type: InternalIP, address: {{nodeIP .}}}]}
---
{{end}}{{range .Services}}apiVersion: v1
kind: Service
metadata: {name: {{.Name}}, namespace: default}
spec:
  type: {{or .Type "ClusterIP"}}
  clusterIP: {{.ClusterIP}}
{{- if .ETP}}
  externalTrafficPolicy: {{.ETP}}{{end}}
{{- if .ITP}}
  internalTrafficPolicy: {{.ITP}}{{end}}
{{- if .Affinity}}
  sessionAffinity: {{.Affinity}}{{end}}
  ports: [{name: p, port: {{.Port}}, protocol: {{or .Protocol "TCP"}}{{if .NodePort}}, nodePort: {{.NodePort}}{{end}}}]
{{- if .LBIP}}
status: {loadBalancer: {ingress: [{ip: {{.LBIP}}}]}}{{end}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: {{.Name}}-1, namespace: default, labels: {kubernetes.io/service-name: {{.Name}}}}
addressType: IPv4
ports: [{name: p, port: 8080, protocol: {{or .Protocol "TCP"}}}]
endpoints:
{{- range .Endpoints}}
- {addresses: [{{.IP}}], nodeName: node-{{.Node}}, conditions: {ready: {{not .NotReady}}}}
{{- else}} []{{end}}
---
{{end}}`))
