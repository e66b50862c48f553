package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// BenchmarkApply times one `ganglionctl apply` of 10,000 services (a directory of 100 files)
// against a brain on its embedded store: decoding, validation, allocation of 10,000 VIPs and the
// one transaction that stores them, end to end as an operator runs it. It checks that every
// service is stored before it prints, and that applying the directory again stores nothing.
func BenchmarkApply(b *testing.B) {
	const services, files = 10000, 100
	dir := b.TempDir()
	manifests := filepath.Join(dir, "manifests")
	if err := os.Mkdir(manifests, 0o755); err != nil {
		b.Fatal(err)
	}
	for f := range files {
		var sb strings.Builder
		for i := f * services / files; i < (f+1)*services/files; i++ {
			fmt.Fprintf(&sb, "---\napiVersion: ganglion-proxy.io/v1\nkind: Service\nmetadata: {name: svc-%d, namespace: bulk}\n"+
				"spec:\n  ports: [{name: http, port: 80, targetPort: 8080}]\n  backends: [{address: 10.%d.%d.%d}]\n", i, 100+i>>16, i>>8&255, i&255)
		}
		if err := os.WriteFile(filepath.Join(manifests, fmt.Sprintf("%03d.yaml", f)), []byte(sb.String()), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	pkiDir := filepath.Join(dir, "pki")
	brain := proc.StartBrain(b, testenv.FreeAddr(b), append(proc.EtcdArgs(b, dir), "--pki-dir", pkiDir)...)
	brain.WaitReady(b)
	ctl := func(args ...string) (string, error) {
		return proc.Ctl(b, nil, append([]string{"--server", brain.Addr, "--pki-dir", pkiDir, "--request-timeout", "5m"}, args...)...)
	}
	for range b.N {
		start := time.Now()
		out, err := ctl("apply", "-f", manifests)
		took := time.Since(start)
		if err != nil || strings.Count(out, " applied") != services {
			b.Fatalf("apply: %v\n%s", err, proc.Tail(out, 5))
		}
		out, err = ctl("get", "svc", "-n", "bulk", "-o", "json")
		var list struct{ Items []json.RawMessage }
		if err != nil || json.Unmarshal([]byte(out), &list) != nil || len(list.Items) != services {
			b.Fatalf("get: %d services stored, want %d (%v)", len(list.Items), services, err)
		}
		out, err = ctl("apply", "-f", manifests)
		if err != nil || strings.Count(out, " unchanged") != services {
			b.Fatalf("second apply is not a no-op: %v\n%s", err, proc.Tail(out, 5))
		}
		fmt.Printf("BENCH apply services=%d files=%d seconds=%.2f\n", services, files, took.Seconds())
		if _, err := ctl("delete", "-f", manifests); err != nil {
			b.Fatalf("delete: %v", err)
		}
	}
}
