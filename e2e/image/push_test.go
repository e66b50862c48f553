package image_test

import (
	"io"
	"log"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"

	"github.com/ganglion-proxy/ganglion/internal/image"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// TestImagePushesWithCrane pushes the layout as deploy/README.md says (`crane push bin/image
// <registry>/ganglion:<tag>`) to a registry in this process, and reads back the same digest.
func TestImagePushesWithCrane(t *testing.T) {
	crane := testenv.RequireCommand(t, "crane") // make image-test builds the pinned one into .bin
	dir := requireLayout(t)
	img, err := image.ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	ref := strings.TrimPrefix(reg.URL, "http://") + "/ganglion:test"
	if out, err := exec.Command(crane, "push", dir, ref).CombinedOutput(); err != nil {
		t.Fatalf("crane push: %v\n%s", err, out)
	}
	out, err := exec.Command(crane, "digest", ref).CombinedOutput()
	if got := strings.TrimSpace(string(out)); err != nil || got != want.String() {
		t.Errorf("crane digest after push: %q (%v), want %s", got, err, want)
	}
}
