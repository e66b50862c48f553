package security

import (
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
)

// agent is an agent process and the loopback addresses of its /healthz and /metrics.
type agent struct {
	*proc.Proc
	healthz, metrics string
}

// startAgent runs node's agent against brain, trusting caFile and presenting id. Its dataplane
// is the recording one: these tests are about who may talk to the brain, not about the kernel.
func startAgent(t *testing.T, brain, caFile, node string, id testpki.Pair, extra ...string) *agent {
	t.Helper()
	a := &agent{healthz: testenv.FreeAddr(t), metrics: testenv.FreeAddr(t)}
	argv := []string{filepath.Join(proc.Binaries(t), "ganglion-agent"), "--node-name", node, "--brain", brain,
		"--dataplane", "recording", "--healthz-bind-address", a.healthz, "--metrics-bind-address", a.metrics,
		"--tls-ca", caFile, "--tls-cert", id.Cert, "--tls-key", id.Key}
	a.Proc = proc.Start(t, append(argv, extra...)...)
	return a
}

// synced reports whether the agent says it is connected and has applied a complete state.
func (a *agent) synced() bool {
	return proc.AgentSynced(&http.Client{Timeout: 2 * time.Second}, a.healthz)
}
