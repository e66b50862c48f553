// Package nft runs Ganglion end to end on the host kernel: the brain and one nftables agent per
// node as real processes in network namespaces, real TCP and UDP from pods and an outside client.
package nft

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
)

// The lab's services. Endpoints name (node, pod).
func labServices() []service {
	return []service{
		{Name: "web", ClusterIP: "10.96.0.10", Port: 80, Endpoints: []endpoint{{Node: 1}, {Node: 2}}},
		{Name: "dns", ClusterIP: "10.96.0.53", Port: 53, Protocol: "UDP", Endpoints: []endpoint{{Node: 2, Pod: 1}}},
		{Name: "np-cluster", ClusterIP: "10.96.0.20", Type: "NodePort", Port: 80, NodePort: 30080,
			Endpoints: []endpoint{{Node: 1}, {Node: 2}, {Node: 3}}},
		{Name: "np-local", ClusterIP: "10.96.0.21", Type: "NodePort", ETP: "Local", Port: 80, NodePort: 30081,
			Endpoints: []endpoint{{Node: 1}, {Node: 1, Pod: 1}}},
		{Name: "lb", ClusterIP: "10.96.0.30", Type: "LoadBalancer", Port: 80, NodePort: 30090, LBIP: lbIP,
			Endpoints: []endpoint{{Node: 2}, {Node: 3}}},
		{Name: "node-local", ClusterIP: "10.96.0.40", ITP: "Local", Port: 80, Endpoints: []endpoint{{Node: 1, Pod: 1}, {Node: 2, Pod: 1}}},
		{Name: "empty", ClusterIP: "10.96.0.60", Port: 80},
		{Name: "sticky", ClusterIP: "10.96.0.70", Affinity: "ClientIP", Port: 80, Endpoints: []endpoint{{Node: 1}, {Node: 2}, {Node: 3}}},
		{Name: "self", ClusterIP: "10.96.0.80", Port: 80, Endpoints: []endpoint{{Node: 3, Pod: 1}}},
	}
}

func setEndpoints(svcs []service, name string, eps []endpoint) []service {
	for i := range svcs {
		if svcs[i].Name == name {
			svcs[i].Endpoints = eps
		}
	}
	return svcs
}

// backends asks addr n times from ns and returns the backends that answered, with the sources
// they saw.
func backends(t *testing.T, ns *netlab.NS, addr string, n int) (map[string]int, map[string]int) {
	t.Helper()
	seen, sources := map[string]int{}, map[string]int{}
	for range n {
		g, err := ns.AskTCP(addr)
		if err != nil {
			t.Fatalf("%s from %s: %v", addr, ns.Name, err)
		}
		seen[netlab.Backend(g)]++
		sources[netlab.Source(g)]++
	}
	return seen, sources
}

func only(m map[string]int, keys ...string) bool {
	if len(m) != len(keys) {
		return false
	}
	for _, k := range keys {
		if m[k] == 0 {
			return false
		}
	}
	return true
}

// TestMultiNodeCluster runs every case on one lab: building it takes seconds, the cases less.
func TestMultiNodeCluster(t *testing.T) {
	c := newCluster(t)
	c.write(manifests{Services: labServices()})
	c.startBrain()
	for i := 1; i <= nodes; i++ {
		c.startAgent(i)
	}
	proc.Eventually(t, "every node programmed", func() bool {
		for i := 1; i <= nodes; i++ {
			if g, err := c.pod(i, 0).AskTCP("10.96.0.10:80"); err != nil || g == "" {
				return false
			}
		}
		return true
	})

	t.Run("ClusterIP from a pod spreads over the service's pods", func(t *testing.T) {
		seen, sources := backends(t, c.pod(3, 0), "10.96.0.10:80", 30)
		if !only(seen, "pod1a", "pod2a") {
			t.Errorf("backends %v, want pod1a and pod2a", seen)
		}
		if !only(sources, podIP(3, 0)) {
			t.Errorf("sources %v: pod-to-service traffic must keep the pod's address", sources)
		}
	})

	t.Run("UDP ClusterIP", func(t *testing.T) {
		g, err := c.pod(1, 0).AskUDP("10.96.0.53:53")
		if err != nil || netlab.Backend(g) != "pod2b" {
			t.Errorf("UDP answer %q, %v", g, err)
		}
	})

	t.Run("NodePort with externalTrafficPolicy Cluster spreads over all nodes and masquerades", func(t *testing.T) {
		seen, sources := backends(t, c.client, nodeIP(1)+":30080", 40)
		if !only(seen, "pod1a", "pod2a", "pod3a") {
			t.Errorf("backends %v, want a pod on every node", seen)
		}
		if sources[clientIP] != 0 {
			t.Errorf("sources %v: a remote backend must see the node's address, not the client's", sources)
		}
	})

	t.Run("NodePort with externalTrafficPolicy Local keeps the client address and stays local", func(t *testing.T) {
		seen, sources := backends(t, c.client, nodeIP(1)+":30081", 20)
		if !only(seen, "pod1a", "pod1b") || !only(sources, clientIP) {
			t.Errorf("backends %v sources %v, want node 1's pods seeing %s", seen, sources, clientIP)
		}
		if _, err := c.client.AskTCP(nodeIP(3) + ":30081"); !netlab.IsTimeout(err) {
			t.Errorf("node 3 has no local pod: want the connection dropped, got %v", err)
		}
	})

	t.Run("load balancer IP", func(t *testing.T) {
		seen, _ := backends(t, c.client, lbIP+":80", 20)
		if !only(seen, "pod2a", "pod3a") {
			t.Errorf("backends %v, want pod2a and pod3a", seen)
		}
	})

	t.Run("internalTrafficPolicy Local uses only the node's own pod, and drops without one", func(t *testing.T) {
		seen, _ := backends(t, c.pod(1, 0), "10.96.0.40:80", 10)
		if !only(seen, "pod1b") {
			t.Errorf("backends from node 1: %v, want pod1b only", seen)
		}
		if _, err := c.pod(3, 0).AskTCP("10.96.0.40:80"); !netlab.IsTimeout(err) {
			t.Errorf("node 3 has no local pod: want a drop, got %v", err)
		}
	})

	t.Run("a service without endpoints refuses connections", func(t *testing.T) {
		if _, err := c.pod(2, 0).AskTCP("10.96.0.60:80"); !netlab.IsRefused(err) {
			t.Errorf("want connection refused, got %v", err)
		}
	})

	t.Run("session affinity sticks", func(t *testing.T) {
		seen, _ := backends(t, c.pod(1, 1), "10.96.0.70:80", 15)
		if len(seen) != 1 {
			t.Errorf("ClientIP affinity spread one client over %v", seen)
		}
	})

	t.Run("hairpin: a pod reaches itself through its service", func(t *testing.T) {
		g, err := c.pod(3, 1).AskTCP("10.96.0.80:80")
		if err != nil || netlab.Backend(g) != "pod3b" {
			t.Errorf("hairpin gave %q, %v", g, err)
		}
	})

	t.Run("healthz answers on the node", func(t *testing.T) {
		resp, err := c.client.HTTPClient().Get("http://" + nodeIP(2) + ":10256/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("healthz: %d", resp.StatusCode)
		}
	})

	t.Run("an endpoint that turns not ready receives no new connections", func(t *testing.T) {
		svcs := setEndpoints(labServices(), "web", []endpoint{{Node: 1}, {Node: 2, NotReady: true}})
		c.write(manifests{Services: svcs})
		proc.Eventually(t, "pod2a out of web", func() bool {
			seen, _ := backends(t, c.pod(3, 0), "10.96.0.10:80", 12)
			return only(seen, "pod1a")
		})
		c.write(manifests{Services: labServices()})
		proc.Eventually(t, "pod2a back in web", func() bool {
			seen, _ := backends(t, c.pod(3, 0), "10.96.0.10:80", 20)
			return only(seen, "pod1a", "pod2a")
		})
	})

	t.Run("an agent restart keeps an open connection", func(t *testing.T) {
		conn, err := c.client.Dial(nodeIP(2) + ":30080")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		c.nodes[1].agent.Stop()
		c.startAgent(2)
		// The new agent has read the table back and synced with the brain.
		proc.Eventually(t, "node-2's new agent synced", func() bool { return c.agentSynced(2) })
		for i := range 3 {
			if g, err := conn.Ask(); err != nil || g != conn.Greeting {
				t.Fatalf("exchange %d after the restart: %q, %v (first answer %q)", i, g, err, conn.Greeting)
			}
		}
	})

	t.Run("a rule deleted by hand comes back", func(t *testing.T) {
		// The services chain dispatches every frontend: without its rules nothing is proxied.
		c.nodes[0].ns.Run(t, "nft", "flush", "chain", "ip", "ganglion", "services")
		proc.Eventually(t, "web reachable from node 1 again", func() bool {
			g, err := c.pod(1, 1).AskTCP("10.96.0.10:80")
			return err == nil && g != ""
		})
		if out := c.nodes[0].ns.Run(t, "nft", "list", "chain", "ip", "ganglion", "services"); !strings.Contains(out, "@") {
			t.Errorf("the services chain was not repaired:\n%s", out)
		}
	})

	if t.Failed() {
		for i, n := range c.nodes {
			t.Logf("node-%d ruleset:\n%s", i+1, n.ns.Run(t, "nft", "list", "table", "ip", "ganglion"))
		}
		t.Logf("brain:\n%s", c.brain.Output())
		fmt.Println()
	}
}
