package chaos

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Agent is one ganglion-agent process: with the recording dataplane on the host (it programs
// nothing; what it holds is what it acknowledged, read through the brain's InspectService), or
// with nftables in a node namespace of a lab.
type Agent struct {
	*proc.Proc
	Node, IP, Healthz string
	// Backend is where the node's backends live: the node's own loopback address on the host,
	// its first pod in a lab.
	Backend string
}

// Harness is the system under test: the etcd cluster, the brains on it, the agents.
type Harness struct {
	t      testing.TB
	Etcd   *Cluster
	mu     sync.Mutex
	brains []*proc.Brain
	addrs  []string
	Agents []*Agent
	conns  []*grpc.ClientConn
	// lab is nil on the host; with it, everything runs in its namespaces (see lab.go).
	lab      *netlab.Lab
	pki      *testpki.PKI
	brainTLS []string
	Traffic  *Traffic
	// hcAddrs are the health-checked listeners' addresses on the host, by agent.
	hcAddrs map[int]string
}

// Options shape a harness.
type Options struct {
	Members, Brains, Agents int
	// Lab runs etcd and the brains in a fabric namespace and nftables agents in node namespaces,
	// with a pod sending real traffic to a service's VIP throughout.
	Lab bool
}

// NewHarness starts everything and waits until every agent is synced.
func NewHarness(t testing.TB, o Options) *Harness {
	t.Helper()
	h := &Harness{t: t}
	if o.Lab {
		h.newLab(o)
	} else {
		h.Etcd = StartCluster(t, o.Members)
		for range o.Brains {
			h.addrs = append(h.addrs, testenv.FreeAddr(t))
		}
	}
	h.brains = make([]*proc.Brain, o.Brains)
	for i := range o.Brains {
		h.StartBrain(i)
	}
	for i := range o.Brains {
		h.WaitReady(i)
		conn, err := grpc.NewClient(h.addrs[i], h.dialOptions()...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		h.conns = append(h.conns, conn)
	}
	for i := range o.Agents {
		h.startAgent(i + 1)
	}
	proc.EventuallyWithin(t, time.Minute, "agents synced", h.AgentsSynced)
	startHealthFlapper(t, h)
	if h.lab != nil {
		h.Traffic = startTraffic(t, h)
	}
	return h
}

// StartBrain (re)starts brain i on its address, on the external etcd cluster. On the host,
// loopback addresses are allowed so that backends can be the agents' own loopback listeners.
func (h *Harness) StartBrain(i int) {
	h.t.Helper()
	var b *proc.Brain
	if h.lab != nil {
		b = h.startLabBrain(i)
	} else {
		b = proc.StartBrain(h.t, h.addrs[i], "--insecure", "--source", "etcd", "--etcd-endpoints", h.Etcd.Endpoints(),
			"--allow-address-range", "127.0.0.0/8")
	}
	h.mu.Lock()
	h.brains[i] = b
	h.mu.Unlock()
}

// WaitReady waits until brain i says it is ready.
func (h *Harness) WaitReady(i int) {
	h.t.Helper()
	b := h.Brain(i)
	c := h.httpClient()
	proc.EventuallyWithin(h.t, 2*time.Minute, "brain ready on "+b.Health, func() bool {
		if b.Exited() {
			h.t.Fatalf("brain exited before it was ready:\n%s", proc.Tail(b.Output(), 4000))
		}
		resp, err := c.Get("http://" + b.Health + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// Brain returns brain i's current process.
func (h *Harness) Brain(i int) *proc.Brain {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.brains[i]
}

// httpClient reaches the brains' and agents' HTTP ports.
func (h *Harness) httpClient() *http.Client {
	if h.lab != nil {
		return h.lab.Fabric.HTTPClient()
	}
	return &http.Client{Timeout: 2 * time.Second}
}

// dialOptions reach the brains' gRPC ports as an administrator.
func (h *Harness) dialOptions() []grpc.DialOption {
	if h.lab != nil {
		return h.labDialOptions()
	}
	return []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
}

// Conn returns a client connection to brain i (it reconnects across restarts: same address).
func (h *Harness) Conn(i int) *grpc.ClientConn { return h.conns[i%len(h.conns)] }

// Brains is the number of brains.
func (h *Harness) Brains() int { return len(h.addrs) }

// startAgent runs node-i: on the host on 127.0.0.1<i> with the recording dataplane, in a lab
// in its namespace with nftables.
func (h *Harness) startAgent(i int) {
	if h.lab != nil {
		h.Agents = append(h.Agents, h.startLabAgent(i))
		return
	}
	a := &Agent{Node: fmt.Sprintf("node-%d", i), IP: fmt.Sprintf("127.0.0.%d", 10+i), Healthz: testenv.FreeAddr(h.t)}
	a.Backend = a.IP
	a.Proc = proc.Start(h.t, filepath.Join(proc.Binaries(h.t), "ganglion-agent"), "--insecure",
		"--brain", strings.Join(h.addrs, ","), "--node-name", a.Node, "--node-ip", a.IP,
		"--dataplane", "recording", "--healthz-bind-address", a.Healthz, "--metrics-bind-address", "")
	h.Agents = append(h.Agents, a)
}

// AgentsSynced reports whether every agent says it is connected and holds a complete state.
func (h *Harness) AgentsSynced() bool {
	c := h.httpClient()
	for _, a := range h.Agents {
		if !proc.AgentSynced(c, a.Healthz) {
			return false
		}
	}
	return true
}

// Held returns, per node, the workload services the node's agent acknowledged (name -> version),
// read from the brain that streams to it; a node no brain serves with nothing pending is absent.
func (h *Harness) Held(ctx context.Context) map[string]State {
	held := map[string]State{}
	for i := range h.conns {
		in := v1.NewInspectServiceClient(h.conns[i])
		nodes, err := in.ListNodes(ctx, &v1.ListNodesRequest{})
		if err != nil {
			continue
		}
		for _, n := range nodes.Nodes {
			if !n.Connected || n.Pending != 0 || n.Rejected != 0 {
				continue
			}
			st, err := in.GetNodeState(ctx, &v1.GetNodeStateRequest{Node: n.Name})
			if err != nil {
				continue
			}
			held[n.Name] = workloadOf(st.Resources)
		}
	}
	return held
}

// workloadOf picks the workload's services out of a node's resources: their version is the port.
func workloadOf(rs []*v1.Resource) State {
	s := State{}
	for _, r := range rs {
		sp := r.GetService()
		if sp == nil || sp.Namespace != Namespace || !strings.HasPrefix(sp.Name, Prefix) || len(sp.Frontends) == 0 {
			continue
		}
		s[sp.Name] = int(sp.Frontends[0].Port)
	}
	return s
}

// Converged reports whether every agent holds want.
func (h *Harness) Converged(want State) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	held := h.Held(ctx)
	for _, a := range h.Agents {
		got, ok := held[a.Node]
		if !ok || !equal(got, want) {
			return false
		}
	}
	return true
}

func equal(a, b State) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// startHealthFlapper makes agents report health all along: a health-checked service has one
// backend per node on a listener of this process, and node 1's goes down and up every 3 s.
func startHealthFlapper(t testing.TB, h *Harness) {
	t.Helper()
	var backends []string
	stops := make([]func(), len(h.Agents))
	for i, a := range h.Agents {
		addr, stop := h.listen(i)
		stops[i] = stop
		host, port, _ := net.SplitHostPort(addr)
		backends = append(backends, fmt.Sprintf("{address: %s, port: %s, node: %s}", host, port, a.Node))
	}
	doc := h.nodeDocuments() + fmt.Sprintf(`apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: health, namespace: %s}
spec:
  ports: [{port: 80}]
  healthCheck: {tcpSocket: {}, periodSeconds: 1, failureThreshold: 1, successThreshold: 1}
  backends: [%s]
`, Namespace, strings.Join(backends, ", "))
	h.mustApply(t, "the health-checked service", doc)
	// Registered before every: it runs after the flapping stops.
	t.Cleanup(func() {
		for _, stop := range stops {
			if stop != nil {
				stop()
			}
		}
	})
	every(t, 3*time.Second, func() {
		if stops[0] != nil {
			stops[0]()
			stops[0] = nil
		} else {
			_, stops[0] = h.listen(0)
		}
	})
}

// mustApply stores doc through brain 0, failing t when it cannot.
func (h *Harness) mustApply(t testing.TB, what, doc string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := v1.NewAdminServiceClient(h.Conn(0)).Apply(ctx, &v1.ApplyRequest{Documents: []*v1.Document{{Content: doc}}}); err != nil {
		t.Fatalf("apply %s: %v", what, err)
	}
}

// every runs fn every period on its own goroutine until t ends.
func every(t testing.TB, period time.Duration, fn func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(period):
			}
			fn()
		}
	}()
	t.Cleanup(func() { close(quit); <-done })
}

// nodeDocuments declare the agents' nodes: a backend must name a known node, and the agents'
// leases may not be stored yet.
func (h *Harness) nodeDocuments() string {
	var docs string
	for _, a := range h.Agents {
		docs += fmt.Sprintf("apiVersion: ganglion-proxy.io/v1\nkind: Node\nmetadata: {name: %s}\nspec: {addresses: [%s]}\n---\n", a.Node, a.IP)
	}
	return docs
}

// listen serves TCP for agent i's health checks: on its loopback address on the host, on its
// second pod in a lab. It returns the address and how to stop it.
func (h *Harness) listen(i int) (string, func()) {
	if h.lab != nil {
		stop, err := h.lab.Nodes[i].Pods[1].Listen("hc", healthPort)
		if err != nil {
			return "", nil
		}
		return net.JoinHostPort(netlab.LabPodIP(i+1, 1), fmt.Sprint(healthPort)), stop
	}
	if h.hcAddrs == nil {
		h.hcAddrs = map[int]string{}
	}
	addr := h.hcAddrs[i]
	if addr == "" {
		addr = h.Agents[i].IP + ":0"
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil
	}
	// Listen again on the same port when the flapper brings it back.
	h.hcAddrs[i] = l.Addr().String()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	return l.Addr().String(), func() { _ = l.Close() }
}
