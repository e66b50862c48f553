package security

import (
	"fmt"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// refusedNaming checks that applying doc fails with an error that names field.
func refusedNaming(t *testing.T, b *bareMetal, doc, field string) {
	t.Helper()
	out, err := b.apply(t, doc)
	if err == nil || !strings.Contains(out, field) {
		t.Errorf("apply: %v, want a refusal naming %s:\n%s", err, field, out)
		return
	}
	t.Logf("refused: %s", strings.TrimSpace(out))
}

// service is a native service document named name with the spec lines given (indented two).
func service(name string, spec ...string) string {
	return fmt.Sprintf("apiVersion: ganglion-proxy.io/v1\nkind: Service\nmetadata: {name: %s, namespace: default}\nspec:\n  ports: [{port: 80, targetPort: 8080}]\n  %s\n",
		name, strings.Join(spec, "\n  "))
}

// execCheckRefused: agents run exec checks as root, so a service whose exec check would run on
// a node whose agent does not allow that command is refused when it is applied, naming the
// field. An agent that allows the command is the control: the same service on its node is
// accepted.
func execCheckRefused(t *testing.T, b *bareMetal) {
	const cmd = "/usr/bin/true"
	doc := func(node string) string {
		return service("checked-on-"+node, "healthCheck: {exec: {command: ["+cmd+"]}}", "backends: [{address: 10.30.0.1, node: "+node+"}]")
	}
	plain := startAgent(t, b.Addr, b.caFile, "exec-default", b.issue(t, pki.RoleNode, "exec-default"))
	proc.Eventually(t, "exec-default's agent connected", plain.synced)
	refusedNaming(t, b, doc("exec-default"), "spec.healthCheck.exec.command")

	allowing := startAgent(t, b.Addr, b.caFile, "exec-allowed", b.issue(t, pki.RoleNode, "exec-allowed"), "--exec-allow", cmd)
	proc.Eventually(t, "exec-allowed's agent connected", allowing.synced)
	// Its registration reaches the store just after the stream opens.
	var out string
	proc.Eventually(t, "the exec check accepted on a node that allows it", func() bool {
		var err error
		out, err = b.apply(t, doc("exec-allowed"))
		return err == nil
	})
	t.Logf("accepted: %s", out)
}

// specialAddressRefused: a service on loopback would capture the nodes' own local traffic, one on
// 169.254.169.254 the cloud metadata service; backends there would aim traffic at the nodes
// themselves.
func specialAddressRefused(t *testing.T, b *bareMetal) {
	for _, c := range []struct{ doc, field string }{
		{service("on-loopback", "vips: [127.0.0.10]", "backends: [{address: 10.30.0.2}]"), "spec.vips[0]"},
		{service("on-metadata", "vips: [169.254.169.254]", "backends: [{address: 10.30.0.2}]"), "spec.vips[0]"},
		{service("to-loopback", "backends: [{address: 127.0.0.1}]"), "spec.backends[0].address"},
		{service("to-metadata", "backends: [{address: 169.254.169.254}]"), "spec.backends[0].address"},
	} {
		refusedNaming(t, b, c.doc, c.field)
	}
}

// probeAuthorityRefused: agents build the probe's URL from the backend's address and the path;
// a path starting with '@' would turn the address into user information and send the probe to
// another host.
func probeAuthorityRefused(t *testing.T, b *bareMetal) {
	refusedNaming(t, b, service("at-host", "healthCheck: {httpGet: {path: '@evil.example'}}", "backends: [{address: 10.30.0.3}]"),
		"spec.healthCheck.httpGet.path")
}
