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

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Agent is one ganglion-agent process with the recording dataplane (it programs nothing; what it
// holds is what it acknowledged, read through the brain's InspectService).
type Agent struct {
	*proc.Proc
	Node, IP, Healthz string
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
	health *healthFlapper
}

// Options shape a harness.
type Options struct {
	Members, Brains, Agents int
}

// NewHarness starts everything and waits until every agent is synced.
func NewHarness(t testing.TB, o Options) *Harness {
	t.Helper()
	h := &Harness{t: t, Etcd: StartCluster(t, o.Members)}
	for range o.Brains {
		h.addrs = append(h.addrs, proc.FreeAddr(t))
	}
	h.brains = make([]*proc.Brain, o.Brains)
	for i := range o.Brains {
		h.StartBrain(i)
	}
	for i := range o.Brains {
		h.Brain(i).WaitReady(t)
		conn, err := grpc.NewClient(h.addrs[i], grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		h.conns = append(h.conns, conn)
	}
	for i := range o.Agents {
		h.startAgent(i + 1)
	}
	for _, a := range h.Agents {
		proc.EventuallyWithin(t, time.Minute, a.Node+" synced", func() bool { return proc.AgentSynced(http.DefaultClient, a.Healthz) })
	}
	h.health = startHealthFlapper(t, h)
	return h
}

// StartBrain (re)starts brain i on its address, on the external etcd cluster. Loopback
// addresses are allowed so that backends can be the agents' own loopback listeners.
func (h *Harness) StartBrain(i int) {
	h.t.Helper()
	b := proc.StartBrain(h.t, h.addrs[i], "--insecure", "--source", "etcd", "--etcd-endpoints", h.Etcd.Endpoints(),
		"--allow-address-range", "127.0.0.0/8")
	h.mu.Lock()
	h.brains[i] = b
	h.mu.Unlock()
}

// Brain returns brain i's current process.
func (h *Harness) Brain(i int) *proc.Brain {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.brains[i]
}

// Conn returns a client connection to brain i (it reconnects across restarts: same address).
func (h *Harness) Conn(i int) *grpc.ClientConn { return h.conns[i%len(h.conns)] }

// Brains is the number of brains.
func (h *Harness) Brains() int { return len(h.addrs) }

// startAgent runs node-i on 127.0.0.1<i> with the recording dataplane and every brain.
func (h *Harness) startAgent(i int) {
	a := &Agent{Node: fmt.Sprintf("node-%d", i), IP: fmt.Sprintf("127.0.0.%d", 10+i), Healthz: proc.FreeAddr(h.t)}
	a.Proc = proc.Start(h.t, filepath.Join(proc.Binaries(h.t), "ganglion-agent"), "--insecure",
		"--brain", strings.Join(h.addrs, ","), "--node-name", a.Node, "--node-ip", a.IP,
		"--dataplane", "recording", "--healthz-bind-address", a.Healthz, "--metrics-bind-address", "")
	h.Agents = append(h.Agents, a)
}

// AgentsSynced reports whether every agent says it is connected and holds a complete state.
func (h *Harness) AgentsSynced() bool {
	for _, a := range h.Agents {
		if !proc.AgentSynced(http.DefaultClient, a.Healthz) {
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

// healthFlapper makes agents report health all along: a health-checked service has one backend
// per node on a loopback listener of this process, and one of them goes up and down.
type healthFlapper struct {
	stop chan struct{}
	done chan struct{}
}

func startHealthFlapper(t testing.TB, h *Harness) *healthFlapper {
	t.Helper()
	var backends []string
	var listeners []net.Listener
	for _, a := range h.Agents {
		l, err := net.Listen("tcp", a.IP+":0")
		if err != nil {
			t.Fatal(err)
		}
		listeners = append(listeners, l)
		go acceptAll(l)
		backends = append(backends, fmt.Sprintf("{address: %s, port: %d, node: %s}", a.IP, l.Addr().(*net.TCPAddr).Port, a.Node))
	}
	// The nodes are declared with the service: a backend must name a known node, and the agents'
	// leases may not be stored yet.
	var nodes string
	for _, a := range h.Agents {
		nodes += fmt.Sprintf("apiVersion: ganglion-proxy.io/v1\nkind: Node\nmetadata: {name: %s}\nspec: {addresses: [%s]}\n---\n", a.Node, a.IP)
	}
	doc := nodes + fmt.Sprintf(`apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: health, namespace: %s}
spec:
  ports: [{port: 80}]
  healthCheck: {tcpSocket: {}, periodSeconds: 1, failureThreshold: 1, successThreshold: 1}
  backends: [%s]
`, Namespace, strings.Join(backends, ", "))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := v1.NewAdminServiceClient(h.Conn(0)).Apply(ctx, &v1.ApplyRequest{Documents: []*v1.Document{{Content: doc}}}); err != nil {
		t.Fatalf("apply the health-checked service: %v", err)
	}
	f := &healthFlapper{stop: make(chan struct{}), done: make(chan struct{})}
	addr := listeners[0].Addr().String()
	go func() {
		defer close(f.done)
		l := listeners[0]
		for {
			select {
			case <-f.stop:
				if l != nil {
					_ = l.Close()
				}
				return
			case <-time.After(3 * time.Second):
			}
			if l != nil {
				_ = l.Close()
				l = nil
				continue
			}
			if nl, err := net.Listen("tcp", addr); err == nil {
				l = nl
				go acceptAll(l)
			}
		}
	}()
	t.Cleanup(func() {
		close(f.stop)
		<-f.done
		for _, l := range listeners[1:] {
			_ = l.Close()
		}
	})
	return f
}

func acceptAll(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		_ = c.Close()
	}
}
