package baremetal

import (
	"strings"
	"testing"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func execService(name, command, backends string) string {
	return strings.Replace(native("  ports: [{port: 80}]\n  healthCheck: {exec: {command: ["+command+"]}}\n  backends: "+backends+"\n"), "name: web", "name: "+name, 1)
}

// TestExecChecksRunOnlyWhereAgentsAllowThem: an exec check is accepted only when every node
// probing the service's endpoints has a registered agent that allows its program; otherwise the
// error names the command, the node and why.
func TestExecChecksRunOnlyWhereAgentsAllowThem(t *testing.T) {
	st := openStore(t)
	if _, err := applyYAML(t, st, base+"---\napiVersion: ganglion-proxy.io/v1\nkind: Node\nmetadata: {name: edge-3}\n"); err != nil {
		t.Fatal(err)
	}
	register(t, st, "n1", &v1.NodeInfo{ExecCommands: []string{"/usr/local/bin/check-web", "/usr/bin/true"}})
	register(t, st, "edge-3", &v1.NodeInfo{})
	if _, err := applyYAML(t, st, execService("checked", "/usr/local/bin/check-web, --deep", "[{address: 10.1.0.5, node: n1}, {address: 10.1.0.7}]")); err != nil {
		t.Fatalf("an exec check n1's agent allows: %v", err)
	}
	const field = "spec.healthCheck.exec.command[0]: "
	bad := []struct{ name, doc, want string }{
		{"not allowed", execService("web", "/bin/sh, -c, id", "[{address: 10.1.0.5, node: n1}]"),
			field + "node n1's agent does not allow exec checks of /bin/sh (agent flag --exec-allow)"},
		{"no agent", execService("web", "/usr/local/bin/check-web", "[{address: 10.1.0.5, node: n1}, {address: 10.1.0.6, node: n2}]"),
			field + "node n2 has no registered agent"},
		{"an agent allowing none", execService("web", "/usr/bin/true", "[{address: 10.1.0.8, node: edge-3}]"),
			field + "node edge-3's agent does not allow exec checks of /usr/bin/true (agent flag --exec-allow)"},
		{"endpoints from a slice of the same apply", execService("web", "/usr/bin/true", "[]") + "\n---\n" + slice("IPv4", "[{addresses: [10.1.0.9], nodeName: n2}]"),
			field + "node n2 has no registered agent"},
		{"a slice adding a node to a stored exec check",
			strings.Replace(slice("IPv4", "[{addresses: [10.1.0.9], nodeName: n1}, {addresses: [10.1.0.10], nodeName: edge-3}]"), "service-name: web", "service-name: checked", 1),
			"endpoints[1].nodeName: node edge-3's agent does not allow exec checks of /usr/local/bin/check-web (agent flag --exec-allow), and Service default/checked's exec check would run there"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) { rejects(t, st, DefaultSettings(), c.doc, c.want) })
	}
}
