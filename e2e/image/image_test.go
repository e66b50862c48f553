// Package image_test runs Ganglion from its container image, as a container runtime would: the
// image's OCI layout (made by `make image`) is unpacked, and the brain and the agent start from
// that root filesystem, chrooted, in a fresh network namespace, with nothing of the host's.
package image_test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/ganglion-proxy/ganglion/controlplane/example"
	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/image"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
)

// layoutDir is the image under test: $GANGLION_IMAGE, else the checkout's bin/image.
func layoutDir() string {
	if d := os.Getenv("GANGLION_IMAGE"); d != "" {
		return d
	}
	return filepath.Join(proc.Root(), "bin", "image")
}

// requireLayout returns the layout's directory, or skips (fails in CI) when there is none.
func requireLayout(t *testing.T) string {
	dir := layoutDir()
	_, err := os.Stat(filepath.Join(dir, "index.json"))
	testenv.Require(t, err == nil, "no image layout at "+dir+": run make image")
	return dir
}

// unpack reads the layout and extracts its root filesystem.
func unpack(t *testing.T) (v1.Image, *v1.ConfigFile, string) {
	img, err := image.ReadLayout(requireLayout(t))
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	if err := image.Extract(img, rootfs); err != nil {
		t.Fatal(err)
	}
	return img, cf, rootfs
}

// TestImageRunsBrainAndAgent starts the brain (as the unprivileged user the Deployment uses) and
// an agent from the image, checks each prints the version the image is labelled with, and that
// the brain is ready and the agent synced to it, asked over HTTP inside the namespace.
func TestImageRunsBrainAndAgent(t *testing.T) {
	testenv.RequireRoot(t)
	chroot := testenv.RequireCommand(t, "chroot")
	testenv.RequireCommand(t, "ip")
	start := time.Now()
	img, cf, rootfs := unpack(t)
	version := cf.Config.Labels["org.opencontainers.image.version"]
	if version == "" || version == "dev" {
		t.Fatalf("image version label %q: the binaries were built without a version", version)
	}
	for _, bin := range []string{"ganglion-controlplane", "ganglion-agent"} {
		out, err := exec.Command(chroot, rootfs, image.BinDir+"/"+bin, "--version").CombinedOutput()
		if got, want := strings.TrimSpace(string(out)), bin+" "+version; err != nil || got != want {
			t.Errorf("%s --version in the image: %q (%v), want %q", bin, got, err, want)
		}
	}
	if out, err := exec.Command(chroot, rootfs, image.BinDir+"/ganglionctl", "--help").CombinedOutput(); err != nil {
		t.Errorf("ganglionctl --help in the image: %v\n%s", err, out)
	}

	// What a Pod would mount: the manifests the brain reads (the image itself holds none).
	if err := os.WriteFile(filepath.Join(rootfs, "tmp", "cluster.yaml"), example.ClusterYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	ns := netlab.NewNS(t, "gimg-"+netlab.UniqueID())
	in := func(user string, args ...string) []string {
		return ns.Command(append([]string{chroot, "--userspec=" + user, rootfs}, args...)...)
	}
	brain := proc.Start(t, in("65532:65532", image.BinDir+"/ganglion-controlplane", "serve", "--insecure",
		"--source", "manifests", "--manifests", "/tmp/cluster.yaml", "--listen", "127.0.0.1:7070",
		"--health-listen", "127.0.0.1:7072", "--metrics-listen", "127.0.0.1:7071")...)
	agent := proc.Start(t, in("0:0", image.BinDir+"/ganglion-agent", "--insecure", "--brain", "127.0.0.1:7070",
		"--node-name", "node-c", "--dataplane", "recording",
		"--healthz-bind-address", "127.0.0.1:10256", "--metrics-bind-address", "127.0.0.1:10249")...)
	c := ns.HTTPClient()
	for _, path := range []string{"/readyz", "/healthz"} {
		testwait.Eventually(t, "brain "+path+" in the image", func() bool {
			if brain.Exited() {
				t.Fatalf("brain from the image exited:\n%s", brain.Output())
			}
			return httpOK(c, "http://127.0.0.1:7072"+path)
		})
	}
	testwait.Eventually(t, "agent from the image synced to the brain (/healthz)", func() bool {
		if agent.Exited() {
			t.Fatalf("agent from the image exited:\n%s", agent.Output())
		}
		return proc.AgentSynced(c, "127.0.0.1:10256")
	})
	checkReproducible(t, img, cf, rootfs)
	t.Logf("image-test took %v (unpack, two processes, rebuild)", time.Since(start).Round(time.Millisecond))
}

// httpOK reports whether GET url answers 200.
func httpOK(c *http.Client, url string) bool {
	resp, err := c.Get(url)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// checkReproducible builds the image again from the binaries it holds, with the settings its
// config records, and requires the same digest: anyone can rebuild a published image and check it.
func checkReproducible(t *testing.T, img v1.Image, cf *v1.ConfigFile, rootfs string) {
	entries, err := os.ReadDir(filepath.Join(rootfs, image.BinDir))
	if err != nil {
		t.Fatal(err)
	}
	var bins []string
	for _, e := range entries {
		bins = append(bins, filepath.Join(rootfs, image.BinDir, e.Name()))
	}
	slices.Sort(bins)
	again, err := image.Build(image.Spec{Binaries: bins, Entrypoint: cf.Config.Entrypoint, Created: cf.Created.Time,
		Version: cf.Config.Labels["org.opencontainers.image.version"], OS: cf.OS, Architecture: cf.Architecture})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if got, _ := again.Digest(); got != want {
		t.Errorf("the image rebuilt from its own binaries has digest %s, want %s", got, want)
	}
}
