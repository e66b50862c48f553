package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// run builds the lab, runs the story and prints the summary.
func (d *demo) run() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("must run as root: it creates network namespaces and nftables tables")
	}
	var err error
	if d.dir, err = os.MkdirTemp("", "ganglion-demo-"); err != nil {
		return err
	}
	bin := os.Getenv("GANGLION_BIN")
	if bin == "" {
		bin = "bin"
	}
	bin, _ = filepath.Abs(bin)
	self, _ := os.Executable()

	d.step("network: a fabric with the brain, two nodes, three backends (one on node-1, two on node-2)")
	fabric, err := d.ns("fabric")
	if err != nil {
		return err
	}
	for _, c := range [][]string{{"ip", "link", "add", "br0", "type", "bridge"}, {"ip", "addr", "add", "192.168.90.1/24", "dev", "br0"}, {"ip", "link", "set", "br0", "up"}} {
		if err := d.in(fabric, c...); err != nil {
			return err
		}
	}
	backends := map[int][]string{1: {"backend-a"}, 2: {"backend-b", "backend-c"}}
	var nodes []string
	for i := 1; i <= 2; i++ {
		node, err := d.ns(fmt.Sprintf("node%d", i))
		if err != nil {
			return err
		}
		nodes = append(nodes, node)
		nodeIP := fmt.Sprintf("192.168.90.1%d", i)
		cmds := [][]string{
			{"ip", "netns", "exec", fabric, "ip", "link", "add", fmt.Sprintf("v%d", i), "type", "veth", "peer", "name", "eth0", "netns", node},
			{"ip", "netns", "exec", fabric, "ip", "link", "set", fmt.Sprintf("v%d", i), "master", "br0", "up"},
			{"ip", "netns", "exec", node, "ip", "addr", "add", nodeIP + "/24", "dev", "eth0"},
			{"ip", "netns", "exec", node, "ip", "link", "set", "eth0", "up"},
			{"ip", "netns", "exec", node, "ip", "route", "add", "default", "via", "192.168.90.1"},
			{"ip", "netns", "exec", node, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
		}
		for j, name := range backends[i] {
			be, err := d.ns(name)
			if err != nil {
				return err
			}
			ip := fmt.Sprintf("10.244.%d.%d", i, 10+j)
			veth := fmt.Sprintf("b%d", j)
			cmds = append(cmds,
				[]string{"ip", "netns", "exec", node, "ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", be},
				[]string{"ip", "netns", "exec", node, "ip", "addr", "add", fmt.Sprintf("10.244.%d.1/32", i), "dev", veth},
				[]string{"ip", "netns", "exec", node, "ip", "link", "set", veth, "up"},
				[]string{"ip", "netns", "exec", node, "ip", "route", "add", ip + "/32", "dev", veth},
				[]string{"ip", "netns", "exec", be, "ip", "addr", "add", ip + "/32", "dev", "eth0"},
				[]string{"ip", "netns", "exec", be, "ip", "link", "set", "eth0", "up"},
				[]string{"ip", "netns", "exec", be, "ip", "route", "add", fmt.Sprintf("10.244.%d.1", i), "dev", "eth0"},
				[]string{"ip", "netns", "exec", be, "ip", "route", "add", "default", "via", fmt.Sprintf("10.244.%d.1", i)},
			)
		}
		for _, c := range cmds {
			if err := d.sh(c...); err != nil {
				return err
			}
		}
	}
	for i := 1; i <= 2; i++ {
		other := 3 - i
		if err := d.in(nodes[i-1], "ip", "route", "add", fmt.Sprintf("10.244.%d.0/24", other), "via", fmt.Sprintf("192.168.90.1%d", other)); err != nil {
			return err
		}
	}
	for i, names := range backends {
		for _, name := range names {
			if err := d.start(d.id+name, name, self, "backend", name, filepath.Join(d.dir, name+".health")); err != nil {
				return err
			}
			_ = i
		}
	}

	pkiDir, certDir := filepath.Join(d.dir, "pki"), filepath.Join(d.dir, "certs")
	d.step("brain: ganglion-controlplane serve --source etcd --pki-dir %s (embedded etcd in %s; no security flags: it creates its CA, a serving certificate for its addresses and a local admin credential)", pkiDir, d.dir)
	if err := d.start(fabric, "brain", filepath.Join(bin, "ganglion-controlplane"), "serve", "--source", "etcd",
		"--etcd-data-dir", filepath.Join(d.dir, "etcd"), "--pki-dir", pkiDir, "--listen", brainAddr, "--metrics-listen", "",
		"--node-lease-ttl", "3s", "--node-grace", "2s"); err != nil {
		return err
	}
	// ganglionctl on the brain's host finds the local admin credential in --pki-dir, as it would
	// in the default /var/lib/ganglion/pki.
	ctl := func(args ...string) (string, error) {
		out, err := exec.Command("ip", append([]string{"netns", "exec", fabric, filepath.Join(bin, "ganglionctl"),
			"--server", brainAddr, "--pki-dir", pkiDir}, args...)...).CombinedOutput()
		return string(out), err
	}
	if err := d.waitFor("the brain serving TLS", func() (bool, error) {
		_, err := ctl("get", "nodes")
		return err == nil, err
	}); err != nil {
		return err
	}
	for i := range nodes {
		name := fmt.Sprintf("node-%d", i+1)
		out, err := ctl("pki", "issue", "node", name, "--dir", pkiDir, "--out", certDir)
		if err != nil {
			return fmt.Errorf("ganglionctl pki issue: %v\n%s", err, out)
		}
		d.step("ganglionctl pki issue node %s --dir %s --out %s:\n%s", name, pkiDir, certDir, indent(out))
	}
	for i, node := range nodes {
		name, ip := fmt.Sprintf("node-%d", i+1), fmt.Sprintf("192.168.90.1%d", i+1)
		if err := d.start(node, "agent-"+name, filepath.Join(bin, "ganglion-agent"), "--node-name", name,
			"--brain", brainAddr, "--dataplane", "nftables", "--node-ip", ip, "--zone", "rack-1",
			"--tls-ca", filepath.Join(pkiDir, "ca.crt"), "--tls-cert", filepath.Join(certDir, name+".crt"), "--tls-key", filepath.Join(certDir, name+".key"),
			"--healthz-bind-address", ip+":10256", "--metrics-bind-address", "127.0.0.1:10249"); err != nil {
			return err
		}
	}
	d.step("agents: one per node, nftables dataplane, each proving its node's name with its certificate and registering with the brain")

	manifest := filepath.Join(d.dir, "web.yaml")
	if err := os.WriteFile(manifest, []byte(webManifest), 0o644); err != nil {
		return err
	}
	if err := d.waitFor("both agents registered", func() (bool, error) {
		out, err := ctl("nodes")
		return err == nil && strings.Count(out, " true ") == 2, err
	}); err != nil {
		return err
	}
	out, _ := ctl("nodes")
	d.step("ganglionctl nodes:\n%s", indent(out))
	// The same call in plaintext, as any peer on the network could make it before TLS.
	out, err = ctl("--insecure", "get", "nodes")
	if err == nil {
		return fmt.Errorf("the brain answered a plaintext call:\n%s", out)
	}
	d.step("ganglionctl --insecure get nodes (plaintext, no identity):\n%s", indent(out))
	d.summary = append(d.summary, "plaintext refused: "+strings.TrimSpace(out))
	out, err = ctl("apply", "-f", manifest)
	if err != nil {
		return fmt.Errorf("ganglionctl apply: %v\n%s", err, out)
	}
	d.step("ganglionctl apply -f web.yaml:\n%s", indent(out))

	var counts map[string]int
	all := func() (bool, error) {
		var err error
		counts, err = d.spread(nodes[0])
		return err == nil && counts["backend-a"] > 0 && counts["backend-b"] > 0 && counts["backend-c"] > 0 && counts["error"] == 0, err
	}
	if err := d.waitFor("requests spreading over the three backends", all); err != nil {
		return err
	}
	d.step("%d requests to http://%s/ from node-1: %s", runs, vip, show(counts))
	d.summary = append(d.summary, "spread over 3 backends: "+show(counts))

	if err := os.WriteFile(filepath.Join(d.dir, "backend-b.health"), []byte("500"), 0o644); err != nil {
		return err
	}
	start := time.Now()
	d.step("backend-b's /healthz now answers 500 (check: every 1s, failureThreshold 2)")
	if err := d.waitFor("traffic moving away from backend-b", func() (bool, error) {
		var err error
		counts, err = d.spread(nodes[0])
		return err == nil && counts["backend-b"] == 0 && counts["error"] == 0 && len(counts) == 2, err
	}); err != nil {
		return err
	}
	took := time.Since(start).Round(100 * time.Millisecond)
	d.step("after %s: %s", took, show(counts))
	d.summary = append(d.summary, fmt.Sprintf("backend-b failing: out of rotation after %s: %s", took, show(counts)))
	if out, err := ctl("describe", "service", "web", "--node", "node-1"); err == nil {
		d.step("ganglionctl describe service web --node node-1:\n%s", indent(out))
	}

	if err := os.WriteFile(filepath.Join(d.dir, "backend-b.health"), []byte("200"), 0o644); err != nil {
		return err
	}
	start = time.Now()
	d.step("backend-b healthy again (successThreshold 2)")
	if err := d.waitFor("backend-b back in rotation", all); err != nil {
		return err
	}
	took = time.Since(start).Round(100 * time.Millisecond)
	d.step("after %s: %s", took, show(counts))
	d.summary = append(d.summary, fmt.Sprintf("backend-b recovered: back in rotation after %s: %s", took, show(counts)))

	fmt.Println("\nsummary:")
	for _, s := range d.summary {
		fmt.Println("  " + s)
	}
	return nil
}

func indent(s string) string {
	return "      " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n      ")
}

const webManifest = `apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: web}
spec:
  vips: [` + vip + `]
  ports: [{port: 80, targetPort: 8080}]
  scheduler: rr
  healthCheck: {httpGet: {path: /healthz}, periodSeconds: 1, timeoutSeconds: 1, failureThreshold: 2, successThreshold: 2}
  backends:
  - {address: 10.244.1.10, node: node-1}
  - {address: 10.244.2.10, node: node-2}
  - {address: 10.244.2.11, node: node-2}
`
