package baremetal

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"
)

// TestKubernetesGoldensThroughTheStore runs package kube's golden cases through bare metal:
// the same Kubernetes manifests are applied to the store and replayed into an engine by the
// bare-metal source, and every node must be told exactly what the Kubernetes-mode reading gives
// (the "want" of each case). One reading of Kubernetes objects means one answer.
func TestKubernetesGoldensThroughTheStore(t *testing.T) {
	files, _ := filepath.Glob("../kube/testdata/*.txtar")
	if len(files) == 0 {
		t.Fatal("no golden files in ../kube/testdata")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			parts := map[string]string{}
			for _, af := range ar.Files {
				parts[af.Name] = string(af.Data)
			}
			st := openStore(t)
			objs, err := Decode(f, []byte(parts["input.yaml"]))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := Apply(context.Background(), st, objs, DefaultSettings(), false); err != nil {
				t.Fatal(err)
			}
			e := replayed(t, st)
			var b bytes.Buffer
			for _, n := range e.Nodes() {
				e.Render(&b, n)
			}
			if got := b.String(); got != parts["want"] {
				t.Errorf("bare metal differs from Kubernetes mode on %s:\n--- got\n%s--- want\n%s", f, got, parts["want"])
			}
		})
	}
}
