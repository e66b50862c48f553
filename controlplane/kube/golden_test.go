package kube

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/tools/txtar"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/example"
)

var update = flag.Bool("update", false, "rewrite golden files")

// render computes the manifests and renders every node's state, nodes in name order.
func render(t *testing.T, source string, manifests []byte, extraNodes ...string) string {
	t.Helper()
	objs, err := DecodeManifests(source, manifests)
	if err != nil {
		t.Fatal(err)
	}
	e := compute.NewEngine(compute.Options{})
	objs.Load(e)
	var b bytes.Buffer
	for _, n := range append(e.Nodes(), extraNodes...) {
		e.Render(&b, n)
	}
	return b.String()
}

// TestGolden runs testdata/*.txtar: Kubernetes manifests in "input.yaml", every node's rendered
// state in "want". Run with -update to rewrite "want" after a deliberate change.
func TestGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txtar")
	if len(files) == 0 {
		t.Fatal("no golden files")
	}
	for _, f := range files {
		t.Run(strings.TrimSuffix(filepath.Base(f), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var input []byte
			wantIdx := -1
			for i, af := range ar.Files {
				switch af.Name {
				case "input.yaml":
					input = af.Data
				case "want":
					wantIdx = i
				}
			}
			got := render(t, f, input)
			if *update {
				if wantIdx < 0 {
					ar.Files = append(ar.Files, txtar.File{Name: "want"})
					wantIdx = len(ar.Files) - 1
				}
				ar.Files[wantIdx].Data = []byte(got)
				if err := os.WriteFile(f, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if wantIdx < 0 {
				t.Fatal(`no "want" file: run with -update`)
			}
			if want := string(ar.Files[wantIdx].Data); got != want {
				t.Errorf("state differs from %s:\n--- got\n%s--- want\n%s", f, got, want)
			}
		})
	}
}

// TestExampleCluster pins the demo's output.
func TestExampleCluster(t *testing.T) {
	got := render(t, "example", example.ClusterYAML)
	const golden = "testdata/example.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("example state changed:\n--- got\n%s--- want\n%s", got, want)
	}
}
