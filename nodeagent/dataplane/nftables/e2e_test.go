package nftables

import (
	"strings"
	"testing"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

const (
	scopeCluster = v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER
	scopeLocal   = v1.EndpointScope_ENDPOINT_SCOPE_LOCAL
	kindLB       = v1.FrontendKind_FRONTEND_KIND_LOAD_BALANCER
	kindEIP      = v1.FrontendKind_FRONTEND_KIND_EXTERNAL_IP
)

// backendOf is the first word of a server's greeting; sourceOf the address the server saw.
func backendOf(greeting string) string { b, _, _ := strings.Cut(greeting, " "); return b }
func sourceOf(greeting string) string  { _, s, _ := strings.Cut(greeting, " "); return s }

func mustAsk(t *testing.T, n *netNS, addr string) string {
	t.Helper()
	g, err := tcpAsk(n, addr)
	if err != nil {
		t.Fatalf("connect from %s to %s: %v", n.name, addr, err)
	}
	return g
}

func TestClusterIPFromPod(t *testing.T) {
	l := newLab(t, 3)
	d := l.dataplane(t)
	apply(t, d, mkPort("default/web:http/v4", clusterIP("10.96.0.10", 80), cluster(fwd(ep(podIP(1)), ep(podIP(2))))))
	seen := map[string]bool{}
	for range 40 {
		g := mustAsk(t, l.pods[2], "10.96.0.10:80")
		seen[backendOf(g)] = true
		if src := sourceOf(g); src != podIP(3) {
			t.Fatalf("backend saw source %s, want the pod's own %s (no masquerade inside the cluster)", src, podIP(3))
		}
	}
	if !seen["pod1"] || !seen["pod2"] || len(seen) != 2 {
		t.Fatalf("backends reached: %v, want pod1 and pod2", seen)
	}
}
