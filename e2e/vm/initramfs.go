package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

//go:embed init.sh
var initScript []byte

// DefaultTools are the host executables copied into the guest with their shared libraries.
var DefaultTools = []string{"/usr/sbin/ipvsadm", "/usr/sbin/nft", "/usr/sbin/ip"}

// baseImage returns a gzipped cpio holding busybox, /init, the modules and the tools. It is cached
// under the cache dir, keyed by everything that goes into it, since building it costs seconds.
func baseImage(k *Kernel, modules, tools []string) (string, error) {
	order, err := ModuleOrder(k.ModDir, modules)
	if err != nil {
		return "", err
	}
	files := map[string]string{"/bin/busybox": "/bin/busybox"}
	for _, t := range tools {
		files[t] = t
		libs, err := sharedLibs(t)
		if err != nil {
			return "", err
		}
		for _, l := range libs {
			files[l] = l
		}
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%v\n", k.Release, initScript, order)
	for _, guest := range sortedKeys(files) {
		st, err := os.Stat(files[guest])
		if err != nil {
			return "", fmt.Errorf("base image: %w", err)
		}
		fmt.Fprintf(h, "%s %d %d\n", guest, st.Size(), st.ModTime().UnixNano())
	}
	dir := filepath.Join(CacheDir(), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("image dir: %w", err)
	}
	out := filepath.Join(dir, "base-"+hex.EncodeToString(h.Sum(nil))[:16]+".cpio.gz")
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}

	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	c := newCPIO(zw)
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "etc", "root"} {
		c.Dir(d)
	}
	c.File("init", 0o755, initScript)
	for _, guest := range sortedKeys(files) {
		if err := c.HostFile(guest, files[guest]); err != nil {
			return "", err
		}
	}
	var list, dep strings.Builder
	for _, p := range order {
		rel := filepath.Base(p)
		guest := "/lib/modules/" + k.Release + "/" + rel
		if err := c.HostFile(guest, p); err != nil {
			return "", err
		}
		list.WriteString(guest + "\n")
		deps, err := moduleDepends(p)
		if err != nil {
			return "", err
		}
		// modules.dep lets libraries that call modprobe (moby/ipvs does) find what is loaded.
		fmt.Fprintf(&dep, "%s:", rel)
		for _, d := range deps {
			fmt.Fprintf(&dep, " %s.ko", d)
		}
		dep.WriteString("\n")
	}
	c.File("etc/ganglion-vm/modules", 0o644, []byte(list.String()))
	c.File("lib/modules/"+k.Release+"/modules.dep", 0o644, []byte(dep.String()))
	c.File("etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n"))
	c.File("etc/group", 0o644, []byte("root:x:0:\n"))
	if err := c.Close(); err != nil {
		return "", fmt.Errorf("base image: %w", err)
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("base image: %w", err)
	}
	tmp := out + ".tmp"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("base image: %w", err)
	}
	return out, os.Rename(tmp, out)
}

// sharedLibs lists the libraries and loader ldd reports for a dynamic executable, resolved to
// real files; a static one has none.
func sharedLibs(bin string) ([]string, error) {
	out, err := exec.Command("ldd", bin).CombinedOutput()
	if err != nil {
		if bytes.Contains(out, []byte("not a dynamic executable")) {
			return nil, nil
		}
		return nil, fmt.Errorf("ldd %s: %w: %s", bin, err, out)
	}
	var libs []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		var p string
		switch {
		case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
			p = f[2]
		case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
			p = f[0]
		default:
			continue
		}
		libs = append(libs, p)
	}
	return libs, nil
}

// runImage returns an uncompressed cpio with the test binary and the script that runs it. The
// kernel unpacks archives appended one after another, so it goes after the cached base image
// without recompressing tens of megabytes for every run.
func runImage(bin string, args []string, env map[string]string) ([]byte, error) {
	data, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("test binary: %w", err)
	}
	var sh strings.Builder
	sh.WriteString("#!/bin/sh\ncd /root\n")
	for _, k := range sortedKeys(env) {
		fmt.Fprintf(&sh, "export %s=%s\n", k, shellQuote(env[k]))
	}
	sh.WriteString("exec /root/test.bin")
	for _, a := range args {
		sh.WriteString(" " + shellQuote(a))
	}
	sh.WriteString("\n")
	var buf bytes.Buffer
	c := newCPIO(&buf)
	c.File("etc/ganglion-vm/run.sh", 0o755, []byte(sh.String()))
	c.File("root/test.bin", 0o755, data)
	if err := c.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
