package image

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeBinaries writes two small files standing in for the static binaries.
func fakeBinaries(t *testing.T, content string) []string {
	dir := t.TempDir()
	var out []string
	for _, n := range []string{"ganglion-controlplane", "ganglion-agent"} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, []byte("#!fake "+n+" "+content), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func spec(bins []string) Spec {
	return Spec{Binaries: bins, Entrypoint: []string{BinDir + "/ganglion-controlplane"}, Version: "v1.2.3",
		Created: time.Unix(0, 0).UTC(), OS: "linux", Architecture: "amd64"}
}

func digestOf(t *testing.T, s Spec) string {
	img, err := Build(s)
	if err != nil {
		t.Fatal(err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

// TestBuildIsReproducible: the same binaries give the same digest, built from files written at
// different times and listed in any order; a changed binary, version or time gives another.
func TestBuildIsReproducible(t *testing.T) {
	bins := fakeBinaries(t, "one")
	first := digestOf(t, spec(bins))
	time.Sleep(10 * time.Millisecond) // the copies get other mtimes, which must not matter
	again := fakeBinaries(t, "one")
	slices.Reverse(again)
	if d := digestOf(t, spec(again)); d != first {
		t.Errorf("same binaries built twice: %s then %s", first, d)
	}
	other := spec(bins)
	other.Version = "v1.2.4"
	later := spec(bins)
	later.Created = time.Unix(1700000000, 0)
	for what, s := range map[string]Spec{"another binary": spec(fakeBinaries(t, "two")), "another version": other, "another time": later} {
		if d := digestOf(t, s); d == first {
			t.Errorf("%s keeps the digest %s", what, d)
		}
	}
}

// TestLayerEntries: parents before children, sorted, owned by root, stamped with the build time,
// with the modes the binaries and /tmp need.
func TestLayerEntries(t *testing.T) {
	img, err := Build(spec(fakeBinaries(t, "x")))
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d (%v), want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	modes := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(time.Unix(0, 0)) || h.Uid != 0 || h.Gid != 0 || h.Uname != "" {
			t.Errorf("%s: mtime %v, owner %d:%d %q; want the epoch, 0:0", h.Name, h.ModTime, h.Uid, h.Gid, h.Uname)
		}
		names = append(names, strings.TrimSuffix(h.Name, "/"))
		modes[h.Name] = h.Mode
	}
	want := []string{"etc", "etc/group", "etc/passwd", "home", "home/nonroot", "root", "tmp", "usr", "usr/local",
		"usr/local/bin", "usr/local/bin/ganglion-agent", "usr/local/bin/ganglion-controlplane"}
	if !slices.Equal(names, want) {
		t.Errorf("layer entries\n got %v\nwant %v", names, want)
	}
	if modes["tmp/"] != 0o1777 || modes["usr/local/bin/ganglion-agent"] != 0o755 {
		t.Errorf("modes: /tmp %o, agent %o; want 1777, 755", modes["tmp/"], modes["usr/local/bin/ganglion-agent"])
	}
}

// TestBadFilesAreRefused names the offending path.
func TestBadFilesAreRefused(t *testing.T) {
	for _, files := range [][]File{
		{{Path: "etc/passwd"}},
		{{Path: "/etc/../passwd"}},
		{{Path: "/a"}, {Path: "/a"}},
		{{Path: "/a"}, {Path: "/a/b"}},
		{{Path: "/d", Dir: true, Data: []byte("x")}},
	} {
		if _, err := layerTar(files, time.Time{}); err == nil {
			t.Errorf("%v: accepted", files)
		}
	}
}

// TestLayoutRoundTrip writes the layout and the tarball, reads the layout back with the same
// digest, and extracts the root filesystem with its files and modes.
func TestLayoutRoundTrip(t *testing.T) {
	img, err := Build(spec(fakeBinaries(t, "rt")))
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "image")
	if err := WriteLayout(dir, img, "ghcr.io/ganglion-proxy/ganglion:v1.2.3"); err != nil {
		t.Fatal(err)
	}
	if err := WriteTarball(dir+".tar", img, "ghcr.io/ganglion-proxy/ganglion:v1.2.3"); err != nil {
		t.Fatal(err)
	}
	back, err := ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := img.Digest()
	if got, _ := back.Digest(); got != want {
		t.Errorf("layout reads back as %s, want %s", got, want)
	}
	rootfs := t.TempDir()
	if err := Extract(back, rootfs); err != nil {
		t.Fatal(err)
	}
	agent, err := os.ReadFile(filepath.Join(rootfs, "usr/local/bin/ganglion-agent"))
	if err != nil || string(agent) != "#!fake ganglion-agent rt" {
		t.Errorf("extracted agent %q (%v)", agent, err)
	}
	for p, mode := range map[string]os.FileMode{"usr/local/bin/ganglion-agent": 0o755, "tmp": 0o777 | os.ModeSticky | os.ModeDir} {
		fi, err := os.Stat(filepath.Join(rootfs, p))
		if err != nil {
			t.Errorf("%s: %v", p, err)
		} else if fi.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", p, fi.Mode(), mode)
		}
	}
}
