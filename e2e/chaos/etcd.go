package chaos

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// Member is one etcd process of a Cluster, with its own data directory and loopback ports.
type Member struct {
	Name, Client, Peer, Dir string
	mu                      sync.Mutex
	cmd                     *exec.Cmd
	done                    chan struct{}
	log                     *os.File
}

// Cluster is a three-member etcd cluster of Debian's etcd-server processes on loopback,
// plaintext: the faults are the subject here, not TLS (store/external_test.go covers it).
type Cluster struct {
	t       testing.TB
	bin     string
	initial string
	Members []*Member
	// wrap runs a member's command where the brains are (a network namespace); dial connects
	// from there. Both are identity and the plain dialer on the host.
	wrap func(argv []string) []string
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

// StartCluster starts n members on the host and waits until each answers and the cluster
// accepts a write.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	return startCluster(t, n, nil)
}

// startCluster starts n members in ns (the host when nil).
func startCluster(t testing.TB, n int, ns *netlab.NS) *Cluster {
	t.Helper()
	c := &Cluster{t: t, bin: testenv.RequireCommand(t, "etcd"), wrap: func(a []string) []string { return a },
		dial: func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}}
	if ns != nil {
		c.wrap = func(a []string) []string { return ns.Command(a...) }
		c.dial = func(_ context.Context, addr string) (net.Conn, error) { return ns.DialNet("tcp", addr, 2*time.Second) }
	}
	dir := t.TempDir()
	var peers []string
	for i := range n {
		m := &Member{Name: fmt.Sprintf("m%d", i+1), Client: "http://" + testenv.FreeAddr(t),
			Peer: "http://" + testenv.FreeAddr(t), Dir: filepath.Join(dir, fmt.Sprintf("m%d", i+1))}
		c.Members = append(c.Members, m)
		peers = append(peers, m.Name+"="+m.Peer)
	}
	c.initial = strings.Join(peers, ",")
	for _, m := range c.Members {
		c.Start(m)
	}
	t.Cleanup(func() {
		for _, m := range c.Members {
			c.Kill(m)
			if t.Failed() {
				// A fault that misbehaves is usually explained by what the members logged.
				b, _ := os.ReadFile(m.Dir + ".log")
				t.Logf("log of etcd member %s:\n%s", m.Name, proc.Tail(string(b), 6000))
			}
		}
	})
	// Every member, not just a quorum: a fault on one member of a cluster that silently runs on
	// two takes the whole cluster down.
	proc.EventuallyWithin(t, time.Minute, "every etcd member answering and the cluster accepting a write", c.Healthy)
	return c
}

// Endpoints are the members' client URLs, comma-separated, as --etcd-endpoints takes them.
func (c *Cluster) Endpoints() string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.Client)
	}
	return strings.Join(eps, ",")
}

// Start (re)starts m on its data directory; a restarted member rejoins from what it stored.
func (c *Cluster) Start(m *Member) {
	c.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	// Timings are etcd's defaults but for a shorter election: failovers are what is measured.
	argv := c.wrap([]string{c.bin, "--name", m.Name, "--data-dir", m.Dir,
		"--listen-client-urls", m.Client, "--advertise-client-urls", m.Client,
		"--listen-peer-urls", m.Peer, "--initial-advertise-peer-urls", m.Peer,
		"--initial-cluster", c.initial, "--initial-cluster-state", "new", "--initial-cluster-token", "chaos",
		"--heartbeat-interval", "100", "--election-timeout", "1000", "--log-level", "warn"})
	// ip netns exec execs the member itself: signals reach etcd, not a wrapper.
	cmd := exec.Command(argv[0], argv[1:]...)
	log, err := os.OpenFile(m.Dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	m.cmd, m.log, m.done = cmd, log, make(chan struct{})
	done := m.done
	go func() { _ = cmd.Wait(); _ = log.Close(); close(done) }()
}

// Kill ends m with SIGKILL (resuming it first if it was paused, so it dies at once).
func (c *Cluster) Kill(m *Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGKILL)
	_ = m.cmd.Process.Signal(syscall.SIGCONT)
	<-m.done
	m.cmd = nil
}

// Pause stops m with SIGSTOP: a member whose disk or CPU stalls, as the cluster sees it.
func (c *Cluster) Pause(m *Member) { c.signal(m, syscall.SIGSTOP) }

// Resume continues a paused m.
func (c *Cluster) Resume(m *Member) { c.signal(m, syscall.SIGCONT) }

func (c *Cluster) signal(m *Member, s syscall.Signal) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		_ = m.cmd.Process.Signal(s)
	}
}

// Leader returns the member that says it leads, or nil when none answers that it does.
func (c *Cluster) Leader() *Member {
	for m, st := range c.statuses() {
		if st != nil && st.Leader == st.Header.MemberId {
			return m
		}
	}
	return nil
}

// Healthy reports whether every member answers and a quorum accepts a write.
func (c *Cluster) Healthy() bool {
	for _, st := range c.statuses() {
		if st == nil {
			return false
		}
	}
	return c.put() == nil
}

// statuses asks every member for its status; a member that does not answer has nil.
func (c *Cluster) statuses() map[*Member]*clientv3.StatusResponse {
	out := map[*Member]*clientv3.StatusResponse{}
	cli, err := c.client()
	if err != nil {
		for _, m := range c.Members {
			out[m] = nil
		}
		return out
	}
	defer cli.Close()
	for _, m := range c.Members {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		out[m], _ = cli.Status(ctx, m.Client)
		cancel()
	}
	return out
}

func (c *Cluster) client() (*clientv3.Client, error) {
	eps := strings.Split(c.Endpoints(), ",")
	return clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(c.dial)}})
}

// put writes outside Ganglion's prefix, to see that a quorum accepts writes.
func (c *Cluster) put() error {
	cli, err := c.client()
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err = cli.Put(ctx, "/chaos-probe", time.Now().String())
	return err
}
