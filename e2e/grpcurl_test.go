package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/example"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
)

// TestBrainAndAgentProcessesThroughGrpcurl runs the brain on manifests and an agent as real
// processes, secured with certificates from one CA, and drives the brain with grpcurl the way an
// operator with a read-only identity would.
func TestBrainAndAgentProcessesThroughGrpcurl(t *testing.T) {
	bin := proc.Binaries(t)
	dir := t.TempDir()
	manifests := filepath.Join(dir, "cluster.yaml")
	if err := os.WriteFile(manifests, example.ClusterYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	ca := testpki.New(t)
	brain := proc.StartBrain(t, testenv.FreeAddr(t), append([]string{"--manifests", manifests}, ca.BrainFlags()...)...)
	addr := brain.Addr
	brain.WaitReady(t)
	// Health is the one thing a peer without a certificate may ask, as a load balancer would.
	if out, err := proc.Grpcurl(t, append(proc.GrpcurlTLS(ca.CAFile, nil), "-protoset", proc.HealthProtoset(t), addr, "grpc.health.v1.Health/Check")...); err != nil || !strings.Contains(out, `"SERVING"`) {
		t.Fatalf("anonymous health check: %v\n%s", err, out)
	}
	reader := ca.Issue(pki.RoleReader, "ops")
	grpcurl := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		return proc.Grpcurl(t, append(proc.GrpcurlTLS(ca.CAFile, &reader), args...)...)
	}
	out, err := grpcurl(t, addr, "list")
	if err != nil {
		t.Fatalf("grpcurl list: %v\n%s", err, out)
	}
	for _, svc := range []string{"ganglion.v1.AgentService", "ganglion.v1.InspectService", "grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection"} {
		if !strings.Contains(out, svc) {
			t.Errorf("grpcurl list lacks %s:\n%s", svc, out)
		}
	}

	proc.Start(t, append([]string{filepath.Join(bin, "ganglion-agent"), "--node-name", "node-c", "--brain", addr,
		"--dataplane", "recording", "--healthz-bind-address", "", "--metrics-bind-address", ""}, ca.AgentFlags("node-c")...)...)
	type nodeStatus struct {
		Name      string
		Connected bool
		Pending   int
		Resources int
	}
	nodeC := func() nodeStatus {
		out, err := grpcurl(t, addr, "ganglion.v1.InspectService/ListNodes")
		if err != nil {
			t.Fatalf("ListNodes: %v\n%s", err, out)
		}
		var resp struct{ Nodes []nodeStatus }
		if err := json.Unmarshal([]byte(out), &resp); err != nil {
			t.Fatalf("ListNodes is not JSON: %v\n%s", err, out)
		}
		for _, n := range resp.Nodes {
			if n.Name == "node-c" {
				return n
			}
		}
		return nodeStatus{}
	}
	proc.Eventually(t, "node-c connected and in sync", func() bool { n := nodeC(); return n.Connected && n.Pending == 0 })

	out, err = grpcurl(t, "-d", `{"node":"node-c","namespace":"shop","name":"checkout"}`, addr, "ganglion.v1.InspectService/ExplainService")
	if err != nil {
		t.Fatalf("ExplainService: %v\n%s", err, out)
	}
	var ex struct {
		Ports []struct {
			External  struct{ Action string }
			Endpoints []struct{ Address, Reason string }
		}
	}
	if err := json.Unmarshal([]byte(out), &ex); err != nil || len(ex.Ports) != 1 {
		t.Fatalf("ExplainService: %v\n%s", err, out)
	}
	if a := ex.Ports[0].External.Action; a != "TRAFFIC_ACTION_DROP" {
		t.Errorf("checkout's external traffic on node-c (no local pod): %s, want DROP", a)
	}

	// A new local pod for checkout on node-c reaches the agent: its state is in sync again and
	// external traffic now forwards.
	more := strings.Replace(string(example.ClusterYAML), "- {addresses: [10.244.2.20], nodeName: node-b}",
		"- {addresses: [10.244.2.20], nodeName: node-b}\n- {addresses: [10.244.3.20], nodeName: node-c}", 1)
	if err := os.WriteFile(manifests, []byte(more), 0o644); err != nil {
		t.Fatal(err)
	}
	proc.Eventually(t, "node-c forwards checkout's external traffic", func() bool {
		out, err := grpcurl(t, "-d", `{"node":"node-c","namespace":"shop","name":"checkout"}`, addr, "ganglion.v1.InspectService/ExplainService")
		return err == nil && strings.Contains(out, `"external": {`) && strings.Contains(out, "10.244.3.20") && !strings.Contains(out, "TRAFFIC_ACTION_DROP")
	})
	proc.Eventually(t, "node-c acknowledged the change", func() bool { n := nodeC(); return n.Connected && n.Pending == 0 })
}
