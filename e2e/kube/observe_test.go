package kube

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// grpcConn returns a connection to brain replica i, made from inside the fabric once and kept
// until the whole test ends.
func (c *cluster) grpcConn(i int) *grpc.ClientConn {
	return c.grpcConnTo(net.JoinHostPort(brainIPs[i], brainPort))
}

// grpcConnTo is grpcConn for any address in the fabric. It is an operator's connection: TLS
// with a reader's certificate, which may inspect and ask for health.
func (c *cluster) grpcConnTo(addr string) *grpc.ClientConn {
	return c.dialBrain(addr, "reader")
}

// anonConnTo is a TLS connection to addr that shows no certificate: what an agent with a token
// uses, whose identity then comes from the token alone.
func (c *cluster) anonConnTo(addr string) *grpc.ClientConn { return c.dialBrain(addr, "") }

// dialBrain returns a connection to addr as the reader named operator (no certificate when
// empty), made from inside the fabric once per identity and kept until the whole test ends. It
// checks the brain's certificate for brainName, as agents do.
func (c *cluster) dialBrain(addr, operator string) *grpc.ClientConn {
	c.t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conns == nil {
		c.conns = map[string]*grpc.ClientConn{}
	}
	key := addr + "/" + operator
	if conn := c.conns[key]; conn != nil {
		return conn
	}
	roots, err := pki.LoadPool(c.pki.CAFile)
	if err != nil {
		c.t.Fatal(err)
	}
	var pair *pki.KeyPair
	if operator != "" {
		files := c.pki.Issue(pki.RoleReader, operator)
		if pair, err = pki.LoadKeyPair(files.Cert, files.Key); err != nil {
			c.t.Fatal(err)
		}
	}
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(pki.Credentials(pair, roots, brainName)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var nc net.Conn
			err := c.lab.Fabric.Do(func() error {
				var err error
				nc, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				return err
			})
			return nc, err
		}))
	if err != nil {
		c.t.Fatal(err)
	}
	c.top.Cleanup(func() { conn.Close() })
	c.conns[key] = conn
	return conn
}

// serving reports whether replica i answers SERVING on grpc.health.v1: it has synced.
func (c *cluster) serving(i int) bool {
	return c.health(net.JoinHostPort(brainIPs[i], brainPort)) == healthpb.HealthCheckResponse_SERVING
}

// health asks the brain at addr for its overall status (UNKNOWN when it does not answer).
func (c *cluster) health(addr string) healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := healthpb.NewHealthClient(c.grpcConnTo(addr)).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return r.Status
}

// nodesOf returns what replica i's inspect API says about each node.
func (c *cluster) nodesOf(i int) map[string]*v1.NodeStatus {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := v1.NewInspectServiceClient(c.grpcConn(i)).ListNodes(ctx, &v1.ListNodesRequest{})
	out := map[string]*v1.NodeStatus{}
	if err != nil {
		return out
	}
	for _, n := range r.Nodes {
		out[n.Name] = n
	}
	return out
}

// inSync reports whether node's agent is connected to replica i and has acknowledged everything.
func (c *cluster) inSync(i int, node string) bool {
	n := c.nodesOf(i)[node]
	return n != nil && n.Connected && n.Pending == 0 && n.Rejected == 0
}

// stateNames returns the names of the resources in node's desired state on replica i.
func (c *cluster) stateNames(i int, node string) []string {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	r, err := v1.NewInspectServiceClient(c.grpcConn(i)).GetNodeState(ctx, &v1.GetNodeStateRequest{Node: node})
	if err != nil {
		c.t.Fatalf("GetNodeState %s: %v", node, err)
	}
	var names []string
	for _, res := range r.Resources {
		names = append(names, res.Name)
	}
	return names
}

// metric sums every sample of name in replica i's /metrics.
func (c *cluster) metric(i int, name string) float64 {
	c.t.Helper()
	return c.metricWith(i, name, "")
}

// metricWith sums the samples of name in replica i's /metrics whose labels include label
// (e.g. reason="forbidden"); every sample when label is empty.
func (c *cluster) metricWith(i int, name, label string) float64 {
	c.t.Helper()
	resp, err := c.lab.Fabric.HTTPClient().Get("http://" + net.JoinHostPort(brainIPs[i], metricPort) + "/metrics")
	if err != nil {
		c.t.Fatalf("metrics of brain %d: %v", i, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if (!strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{")) || !strings.Contains(line, label) {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// ask makes n new TCP connections from ns to addr and counts the backends that answered.
func ask(ns *netlab.NS, addr string, n int) (seen map[string]int, failed int, lastErr error) {
	seen = map[string]int{}
	for range n {
		g, err := ns.AskTCP(addr)
		if err != nil {
			failed++
			lastErr = err
			continue
		}
		seen[netlab.Backend(g)]++
	}
	return seen, failed, lastErr
}

// servedBy reports whether new connections from ns to addr all succeed and, over enough of them
// to see each one, reach exactly the backends want.
func servedBy(ns *netlab.NS, addr string, want ...string) bool {
	seen, failed, _ := ask(ns, addr, 6*len(want)+6)
	if failed > 0 || len(seen) != len(want) {
		return false
	}
	for _, w := range want {
		if seen[w] == 0 {
			return false
		}
	}
	return true
}

// eventuallyServed waits until every node (and, for a NodePort, the outside client through
// every node) reaches exactly want through addr.
func (c *cluster) eventuallyServed(what, clusterIP string, nodePort int32, want ...string) {
	c.t.Helper()
	for i := 1; i <= nodes; i++ {
		node := c.lab.Nodes[i-1].NS
		c.eventually(what+" from "+nodeName(i), func() bool { return servedBy(node, clusterIP+":80", want...) })
		if nodePort != 0 {
			addr := net.JoinHostPort(netlab.LabNodeIP(i), strconv.Itoa(int(nodePort)))
			c.eventually(what+" from outside through "+addr, func() bool { return servedBy(c.lab.Client, addr, want...) })
		}
	}
}
