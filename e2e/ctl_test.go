package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

const ctlManifests = `apiVersion: ganglion-proxy.io/v1
kind: Node
metadata: {name: edge-1}
spec: {addresses: [192.168.10.1], zone: rack-a}
---
apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: shop, namespace: prod}
spec:
  type: NodePort
  ports: [{name: http, port: 80, targetPort: 8080}]
  scheduler: wrr
  backends:
  - {address: 10.20.0.1, node: edge-1, weight: 2}
  - {address: 10.20.0.2, node: edge-1}
`

// TestCtlAgainstARunningBrain drives a brain in bare-metal mode, with its embedded etcd, through
// ganglionctl as an operator on the brain's host would: the brain creates its CA and a local
// admin credential in --pki-dir, and ganglionctl finds them there.
func TestCtlAgainstARunningBrain(t *testing.T) {
	dir := t.TempDir()
	pkiDir := filepath.Join(dir, "pki")
	brain := proc.StartBrain(t, testenv.FreeAddr(t), append(proc.EtcdArgs(t, dir), "--pki-dir", pkiDir)...)
	brain.WaitReady(t)
	ctl := func(args ...string) (string, error) {
		return proc.Ctl(t, nil, append([]string{"--server", brain.Addr, "--pki-dir", pkiDir}, args...)...)
	}

	file := filepath.Join(dir, "shop.yaml")
	if err := os.WriteFile(file, []byte(ctlManifests), 0o644); err != nil {
		t.Fatal(err)
	}
	// diff computes with the brain's engine what the apply would do, stores nothing, exits 1.
	out, err := ctl("diff", "-f", file)
	if exitStatus(err) != 1 || !strings.Contains(out, "node edge-1:\n  + prod/shop:http/v4") || !strings.Contains(out, "internal: +10.20.0.1:8080 +10.20.0.2:8080") {
		t.Errorf("diff before apply: exit %d (%v)\n%s", exitStatus(err), err, out)
	}
	if out, _ := ctl("get", "svc", "-A"); strings.Contains(out, "shop") {
		t.Errorf("diff stored the service:\n%s", out)
	}
	out, err = ctl("apply", "-f", file)
	if err != nil || !strings.Contains(out, "service/prod/shop applied") || !strings.Contains(out, "node/edge-1 applied") {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	out, err = ctl("get", "svc", "-n", "prod")
	if err != nil || !strings.Contains(out, "shop") || !strings.Contains(out, "NodePort") || !strings.Contains(out, "80:3") {
		t.Errorf("get table: %v\n%s", err, out)
	}
	out, err = ctl("get", "service", "shop", "-n", "prod", "-o", "yaml")
	if err != nil || !strings.Contains(out, "vips:") || !strings.Contains(out, "nodePort:") {
		t.Errorf("get -o yaml shows no allocated VIP and node port: %v\n%s", err, out)
	}
	proc.Eventually(t, "describe shows the node forwarding", func() bool {
		out, err = ctl("describe", "service", "shop", "-n", "prod")
		return err == nil && strings.Contains(out, "node edge-1 (zone rack-a):") && strings.Contains(out, "internal (cluster): FORWARD 10.20.0.1:8080 10.20.0.2:8080")
	})

	// What was applied is what is stored: the same file again is no difference.
	if out, err := ctl("diff", "-f", file); exitStatus(err) != 0 || out != "" {
		t.Errorf("diff after apply: exit %d (%v)\n%s", exitStatus(err), err, out)
	}

	// A bad document fails with its file and field, and the good one beside it is not stored.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(strings.Replace(ctlManifests, "scheduler: wrr", "scheduler: fastest", 1)+
		"---\napiVersion: ganglion-proxy.io/v1\nkind: Node\nmetadata: {name: edge-2}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = ctl("apply", "-f", bad)
	if err == nil || !strings.Contains(out, "bad.yaml#2") || !strings.Contains(out, "spec.scheduler") {
		t.Errorf("bad apply: %v\n%s", err, out)
	}
	if out, _ := ctl("get", "nodes"); strings.Contains(out, "edge-2") {
		t.Errorf("a rejected apply stored part of itself:\n%s", out)
	}

	out, err = ctl("delete", "svc", "shop", "-n", "prod")
	if err != nil || !strings.Contains(out, "deleted") {
		t.Errorf("delete: %v\n%s", err, out)
	}
	if out, err := ctl("get", "svc", "shop", "-n", "prod"); err == nil {
		t.Errorf("deleted service still there:\n%s", out)
	}
}

// exitStatus is a command's exit status from the error exec returned.
func exitStatus(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
