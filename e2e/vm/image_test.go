package vm

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// TestCPIORoundTrip writes an archive and lists it back with busybox's cpio, the same unpacker
// family the kernel's format comes from.
func TestCPIORoundTrip(t *testing.T) {
	bb := "/bin/busybox"
	if _, err := exec.LookPath(bb); err != nil {
		testenv.RequireRoot(t)
		if err := EnsureHostPackages(context.Background()); err != nil {
			testenv.Require(t, false, "busybox: "+err.Error())
		}
	}
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.File("etc/a/b.txt", 0o644, []byte("hello"))
	c.Symlink("bin/sh", "busybox")
	c.File("init", 0o755, []byte("#!/bin/sh\n"))
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if buf.Len()%512 != 0 {
		t.Errorf("archive of %d bytes is not padded to 512", buf.Len())
	}
	cmd := exec.Command(bb, "cpio", "-t")
	cmd.Stdin = &buf
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cpio -t: %v: %s", err, out)
	}
	got := strings.Fields(string(out))
	for _, want := range []string{"etc", "etc/a", "etc/a/b.txt", "bin", "bin/sh", "init"} {
		if !slices.Contains(got, want) {
			t.Errorf("archive lacks %s; has %v", want, got)
		}
	}
}

func TestSharedLibsOfADynamicProgram(t *testing.T) {
	libs, err := sharedLibs("/bin/ls")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(l, "libc.so") }) {
		t.Errorf("libs of /bin/ls = %v, want libc among them", libs)
	}
	if !slices.ContainsFunc(libs, func(l string) bool { return strings.Contains(l, "ld-linux") }) {
		t.Errorf("libs of /bin/ls = %v, want the loader among them", libs)
	}
}

// TestModuleOrderPutsDependenciesFirst checks the resolution against the real kernel package.
func TestModuleOrderPutsDependenciesFirst(t *testing.T) {
	testenv.RequireRoot(t)
	k, err := Prepare(context.Background())
	if err != nil {
		testenv.Require(t, false, "VM prerequisites: "+err.Error())
	}
	order, err := ModuleOrder(k.ModDir, []string{"ip_vs_rr", "nft_masq"})
	if err != nil {
		t.Fatal(err)
	}
	pos := map[string]int{}
	for i, p := range order {
		pos[modName(filepath.Base(p))] = i
	}
	for _, pair := range [][2]string{{"nf_conntrack", "ip_vs"}, {"ip_vs", "ip_vs_rr"}, {"nf_tables", "nft_masq"}, {"nf_nat", "nft_masq"}} {
		a, aok := pos[pair[0]]
		b, bok := pos[pair[1]]
		if !aok || !bok || a > b {
			t.Errorf("%s must come before %s in %v", pair[0], pair[1], order)
		}
	}
	if len(order) != len(pos) {
		t.Errorf("a module appears twice: %v", order)
	}
}
