package chaos

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

	"google.golang.org/grpc"
	"sigs.k8s.io/yaml"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// The lab's fixed addresses: each brain has its own fabric address (agents dial those), the
// traffic service its own VIP, each node's second pod a health-checked port.
const (
	brainPort   = 7070
	trafficVIP  = "10.96.200.1"
	trafficPort = 80
	healthPort  = 9090
)

func labBrainIP(i int) string { return fmt.Sprintf("192.168.77.%d", 1+i) }

// newLab builds the namespaces, the CA, and the etcd cluster in the fabric namespace, where the
// brains run too (etcd listens on the fabric's loopback).
func (h *Harness) newLab(o Options) {
	t := h.t
	var extra []string
	for i := 1; i < o.Brains; i++ {
		extra = append(extra, labBrainIP(i))
	}
	h.lab = netlab.NewLab(t, netlab.LabOptions{Nodes: o.Agents, FabricIPs: extra})
	h.pki = testpki.New(t)
	// One serving certificate names every brain: testpki writes each server certificate to the
	// same files, and brains re-read theirs when the files change.
	var ips []string
	for i := range o.Brains {
		ips = append(ips, labBrainIP(i))
	}
	h.brainTLS = h.pki.BrainFlags(ips...)
	h.Etcd = startCluster(t, o.Members, h.lab.Fabric)
	for i := range o.Brains {
		h.addrs = append(h.addrs, net.JoinHostPort(labBrainIP(i), fmt.Sprint(brainPort)))
	}
}

// startLabBrain runs brain i in the fabric namespace with a serving certificate for its
// address; its health port is on the fabric's loopback.
func (h *Harness) startLabBrain(i int) *proc.Brain {
	b := &proc.Brain{Addr: h.addrs[i], Health: testenv.FreeAddr(h.t)}
	argv := append([]string{filepath.Join(proc.Binaries(h.t), "ganglion-controlplane"), "serve",
		"--listen", b.Addr, "--health-listen", b.Health, "--metrics-listen", "",
		"--source", "etcd", "--etcd-endpoints", h.Etcd.Endpoints()}, h.brainTLS...)
	b.Proc = proc.Start(h.t, h.lab.Fabric.Command(argv...)...)
	return b
}

// labDialOptions reach a brain from the fabric namespace as an administrator.
func (h *Harness) labDialOptions() []grpc.DialOption {
	id := h.pki.Issue(pki.RoleAdmin, "chaos")
	pair, err := pki.LoadKeyPair(id.Cert, id.Key)
	if err != nil {
		h.t.Fatal(err)
	}
	roots, err := pki.LoadPool(h.pki.CAFile)
	if err != nil {
		h.t.Fatal(err)
	}
	fabric := h.lab.Fabric
	return []grpc.DialOption{grpc.WithTransportCredentials(pki.Credentials(pair, roots, "")),
		grpc.WithContextDialer(func(_ context.Context, addr string) (net.Conn, error) {
			return fabric.DialNet("tcp", addr, 2*time.Second)
		})}
}

// startLabAgent runs node i's agent with nftables in its namespace, with node i's certificate.
func (h *Harness) startLabAgent(i int) *Agent {
	a := &Agent{Node: fmt.Sprintf("node-%d", i), IP: netlab.LabNodeIP(i), Backend: netlab.LabPodIP(i, 0)}
	a.Healthz = a.IP + ":10256"
	argv := append([]string{filepath.Join(proc.Binaries(h.t), "ganglion-agent"),
		"--node-name", a.Node, "--brain", strings.Join(h.addrs, ","), "--dataplane", "nftables",
		"--node-ip", a.IP, "--pod-cidr", netlab.LabPodCIDR(i),
		"--healthz-bind-address", a.Healthz, "--metrics-bind-address", ""}, h.pki.AgentFlags(a.Node)...)
	a.Proc = proc.Start(h.t, h.lab.Nodes[i-1].NS.Command(argv...)...)
	return a
}

// Traffic is a pod on node 1 asking a service's VIP over and over, each time on a new TCP
// connection, from the start of the harness to its end: the dataplane must keep answering
// whatever happens to etcd and the brains.
type Traffic struct {
	mu       sync.Mutex
	failures []time.Time
	asked    atomic.Int64
}

// startTraffic stores the traffic service (backends: every node's first pod) and starts asking.
func startTraffic(t testing.TB, h *Harness) *Traffic {
	t.Helper()
	var backends []string
	for _, a := range h.Agents {
		backends = append(backends, fmt.Sprintf("{address: %s, node: %s}", a.Backend, a.Node))
	}
	doc := fmt.Sprintf(`apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: traffic, namespace: %s}
spec:
  vips: [%s]
  ports: [{port: %d, targetPort: %d}]
  backends: [%s]
`, Namespace, trafficVIP, trafficPort, netlab.PodPort, strings.Join(backends, ", "))
	h.mustApply(t, "the traffic service", doc)
	pod := h.lab.Nodes[0].Pods[0]
	addr := net.JoinHostPort(trafficVIP, fmt.Sprint(trafficPort))
	proc.Eventually(t, "traffic to "+addr+" answered", func() bool { _, err := pod.AskTCP(addr); return err == nil })
	tr := &Traffic{}
	every(t, 50*time.Millisecond, func() {
		tr.asked.Add(1)
		if _, err := pod.AskTCP(addr); err != nil {
			tr.mu.Lock()
			tr.failures = append(tr.failures, time.Now())
			tr.mu.Unlock()
		}
	})
	return tr
}

// Mark returns how many requests were made so far, to count those of a window.
func (tr *Traffic) Mark() int64 { return tr.asked.Load() }

// FailedBetween counts requests that failed from from to to.
func (tr *Traffic) FailedBetween(from, to time.Time) int {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	n := 0
	for _, f := range tr.failures {
		if !f.Before(from) && !f.After(to) {
			n++
		}
	}
	return n
}

// Serves reports whether node 1's first pod reaches every workload service in want on its VIP
// and port: the kernel, not only the agent's acknowledgement, holds the state. Off a lab it
// holds trivially.
func (h *Harness) Serves(want State) bool {
	if h.lab == nil {
		return true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := v1.NewAdminServiceClient(h.Conn(0)).Get(ctx, &v1.GetRequest{Selector: &v1.ObjectRef{Kind: "service", Namespace: Namespace}})
	if err != nil {
		return false
	}
	vips := map[string]string{}
	for _, d := range resp.Objects {
		var o struct {
			Metadata struct{ Name string }
			Spec     struct{ VIPs []string }
		}
		if yaml.Unmarshal([]byte(d.Content), &o) == nil && len(o.Spec.VIPs) > 0 {
			vips[o.Metadata.Name] = o.Spec.VIPs[0]
		}
	}
	pod := h.lab.Nodes[0].Pods[0]
	for name, port := range want {
		if vips[name] == "" {
			return false
		}
		if _, err := pod.AskTCP(net.JoinHostPort(vips[name], fmt.Sprint(port))); err != nil {
			return false
		}
	}
	return true
}
