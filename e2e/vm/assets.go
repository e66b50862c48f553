package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
)

// DefaultCacheDir holds the downloaded kernel and built images between runs; GANGLION_VM_CACHE
// overrides it.
const DefaultCacheDir = "/var/cache/ganglion-vm"

// CacheDir returns the cache directory in use.
func CacheDir() string {
	if d := os.Getenv("GANGLION_VM_CACHE"); d != "" {
		return d
	}
	return DefaultCacheDir
}

// hostTools maps each command the harness needs on the host to the Debian package providing it.
var hostTools = []struct{ path, pkg string }{
	{"/usr/bin/qemu-system-x86_64", "qemu-system-x86"},
	{"/bin/busybox", "busybox-static"},
	{"/usr/sbin/ipvsadm", "ipvsadm"},
	{"/usr/sbin/nft", "nftables"},
	{"/usr/sbin/ip", "iproute2"},
}

// Kernel is an unpacked Debian kernel package.
type Kernel struct {
	// Release is the module directory name, e.g. 6.1.0-26-amd64.
	Release string
	// Vmlinuz is the kernel image.
	Vmlinuz string
	// ModDir is lib/modules/<release> in the unpacked tree.
	ModDir string
}

// EnsureHostPackages installs the Debian packages the harness needs when any is missing.
func EnsureHostPackages(ctx context.Context) error {
	var missing []string
	for _, t := range hostTools {
		if _, err := os.Stat(t.path); err != nil {
			missing = append(missing, t.pkg)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	// Another test process may be installing too: wait for dpkg's lock instead of failing.
	args := append([]string{"-o", "DPkg::Lock::Timeout=300", "install", "-y", "-qq", "--no-install-recommends"}, missing...)
	if err := aptGet(ctx, args...); err != nil {
		// A fresh machine may have no package lists yet: refresh them once and retry.
		if uerr := aptGet(ctx, "update", "-qq"); uerr != nil {
			return fmt.Errorf("apt-get update: %w", uerr)
		}
		if err := aptGet(ctx, args...); err != nil {
			return fmt.Errorf("installing %v: %w", missing, err)
		}
	}
	return nil
}

func aptGet(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("apt-get %s: %w: %s", strings.Join(args, " "), err, tail(out, 2000))
	}
	return nil
}

var imageDepRe = regexp.MustCompile(`Depends:\s*(linux-image-[0-9][^\s]*)`)

// EnsureKernel returns Debian's current amd64 kernel, downloading and unpacking it into the cache
// when needed. Offline, it falls back to the newest kernel already cached.
func EnsureKernel(ctx context.Context) (*Kernel, error) {
	root := filepath.Join(CacheDir(), "kernel")
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("cache dir: %w", err)
	}
	unlock, err := lockDir(root)
	if err != nil {
		return nil, err
	}
	defer unlock()

	pkg, err := kernelPackage(ctx)
	if err != nil {
		if k, cerr := newestCachedKernel(root); cerr == nil {
			return k, nil
		}
		return nil, err
	}
	dir := filepath.Join(root, pkg)
	if _, err := os.Stat(filepath.Join(dir, ".done")); err == nil {
		return loadKernel(dir)
	}
	dl := filepath.Join(root, "download")
	_ = os.RemoveAll(dl)
	if err := os.MkdirAll(dl, 0o755); err != nil {
		return nil, fmt.Errorf("download dir: %w", err)
	}
	defer os.RemoveAll(dl)
	cmd := exec.CommandContext(ctx, "apt-get", "download", pkg)
	cmd.Dir = dl
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("apt-get download %s: %w: %s", pkg, err, tail(out, 2000))
	}
	debs, _ := filepath.Glob(filepath.Join(dl, "*.deb"))
	if len(debs) != 1 {
		return nil, fmt.Errorf("apt-get download %s: expected one .deb, found %d", pkg, len(debs))
	}
	_ = os.RemoveAll(dir)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", debs[0], dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("dpkg-deb -x: %w: %s", err, tail(out, 2000))
	}
	if err := os.WriteFile(filepath.Join(dir, ".done"), nil, 0o644); err != nil {
		return nil, fmt.Errorf("marking kernel unpacked: %w", err)
	}
	return loadKernel(dir)
}

// kernelPackage resolves the versioned image package linux-image-amd64 depends on.
func kernelPackage(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").CombinedOutput()
	if err != nil || !imageDepRe.Match(out) {
		if uerr := aptGet(ctx, "update", "-qq"); uerr != nil {
			return "", fmt.Errorf("apt-get update: %w", uerr)
		}
		out, err = exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").CombinedOutput()
	}
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: %w: %s", err, tail(out, 500))
	}
	m := imageDepRe.FindSubmatch(out)
	if m == nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64: no versioned image in %q", tail(out, 500))
	}
	return string(m[1]), nil
}

func newestCachedKernel(root string) (*Kernel, error) {
	dones, _ := filepath.Glob(filepath.Join(root, "linux-image-*", ".done"))
	if len(dones) == 0 {
		return nil, errors.New("no cached kernel")
	}
	sort.Strings(dones)
	return loadKernel(filepath.Dir(dones[len(dones)-1]))
}

func loadKernel(dir string) (*Kernel, error) {
	imgs, _ := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if len(imgs) != 1 {
		return nil, fmt.Errorf("kernel in %s: expected one vmlinuz, found %d", dir, len(imgs))
	}
	rel := strings.TrimPrefix(filepath.Base(imgs[0]), "vmlinuz-")
	mods := filepath.Join(dir, "lib", "modules", rel)
	if _, err := os.Stat(mods); err != nil {
		return nil, fmt.Errorf("kernel modules: %w", err)
	}
	return &Kernel{Release: rel, Vmlinuz: imgs[0], ModDir: mods}, nil
}

// lockDir takes an exclusive flock on dir/.lock so concurrent test processes do not unpack or
// build into the same place at once.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func tail(b []byte, n int) string {
	b = bytes.TrimSpace(b)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
