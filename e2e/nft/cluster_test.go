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
	"github.com/ganglion-proxy/ganglion/internal/testpki"
)

// The lab is netlab's: a fabric with the brain, three nodes with two pods each, an outside client.
const (
	brainIP  = netlab.FabricIP
	clientIP = netlab.ClientIP
	lbIP     = netlab.LBIP
	nodes    = 3
)

var (
	nodeIP = netlab.LabNodeIP
	podIP  = netlab.LabPodIP
)

type node struct {
	ns    *netlab.NS
	pods  []*netlab.NS
	agent *proc.Proc
}

type cluster struct {
	t         *testing.T
	bin       string
	client    *netlab.NS
	fabric    *netlab.NS
	nodes     []*node // nodes[0] is node-1
	manifests string
	brain     *proc.Proc
	// ca issues the brain's serving certificate (for its fabric address) and each node's.
	ca *testpki.PKI
}

func newCluster(t *testing.T) *cluster {
	lab := netlab.NewLab(t, netlab.LabOptions{Nodes: nodes})
	c := &cluster{t: t, bin: proc.Binaries(t), manifests: filepath.Join(t.TempDir(), "cluster.yaml"),
		fabric: lab.Fabric, client: lab.Client, ca: testpki.New(t)}
	for _, n := range lab.Nodes {
		c.nodes = append(c.nodes, &node{ns: n.NS, pods: n.Pods})
	}
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

// startBrain runs the brain in the fabric namespace, serving TLS with a certificate that names
// its fabric address, the one agents dial.
func (c *cluster) startBrain() {
	argv := append([]string{filepath.Join(c.bin, "ganglion-controlplane"), "serve",
		"--manifests", c.manifests, "--listen", brainIP + ":7070", "--metrics-listen", ""}, c.ca.BrainFlags(brainIP)...)
	c.brain = proc.Start(c.t, c.fabric.Command(argv...)...)
}

// startAgent runs node i's agent with the nftables dataplane in its namespace, with node i's
// certificate; extra flags are appended.
func (c *cluster) startAgent(i int, extra ...string) {
	name := fmt.Sprintf("node-%d", i)
	argv := append([]string{filepath.Join(c.bin, "ganglion-agent"),
		"--node-name", name, "--brain", brainIP + ":7070", "--dataplane", "nftables",
		"--node-ip", nodeIP(i), "--pod-cidr", netlab.LabPodCIDR(i),
		"--healthz-bind-address", nodeIP(i) + ":10256", "--metrics-bind-address", "127.0.0.1:10249",
		"--reconcile-interval", "500ms"}, append(c.ca.AgentFlags(name), extra...)...)
	c.nodes[i-1].agent = proc.Start(c.t, c.nodes[i-1].ns.Command(argv...)...)
}

// agentSynced reports whether node i's agent is connected and in sync, by its /healthz.
func (c *cluster) agentSynced(i int) bool {
	return proc.AgentSynced(c.client.HTTPClient(), nodeIP(i)+":10256")
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

type manifests struct {
	Services []service
	// Extra is more YAML documents, appended as they are (services the template cannot say).
	Extra string
}

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
{{end}}{{.Extra}}`))
