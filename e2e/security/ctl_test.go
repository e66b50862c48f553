package security

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
)

// ctl runs ganglionctl as an operator on the brain's host does: with no flags, finding the local
// admin credential and the CA where the brain created them (GANGLION_PKI_DIR stands for the
// default /var/lib/ganglion/pki, GANGLION_SERVER for the default 127.0.0.1:7070).
func (b *bareMetal) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return proc.Ctl(t, []string{"GANGLION_PKI_DIR=" + b.pkiDir, "GANGLION_SERVER=" + b.Addr}, args...)
}

// apply stores doc with `ganglionctl apply -f`.
func (b *bareMetal) apply(t *testing.T, doc string) (string, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "service.yaml")
	if err := os.WriteFile(file, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	return b.ctl(t, "apply", "-f", file)
}

// ctlFindsLocalAdmin: on the brain's host, ganglionctl needs no flags.
func ctlFindsLocalAdmin(t *testing.T, b *bareMetal) {
	out, err := b.apply(t, `apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  ports: [{port: 80, targetPort: 8080}]
  backends: [{address: 10.20.0.1}]
`)
	if err != nil || !strings.Contains(out, "service/default/web applied") {
		t.Errorf("ganglionctl apply: %v\n%s", err, out)
	}
	if out, err := b.ctl(t, "get", "svc", "web"); err != nil || !strings.Contains(out, "web") {
		t.Errorf("ganglionctl get: %v\n%s", err, out)
	}
}
