package vm

import (
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
)

// cpioWriter writes the "newc" cpio format the kernel unpacks as an initramfs. It is small enough
// to keep here, so the host needs no cpio tool.
type cpioWriter struct {
	w    io.Writer
	n    int64
	ino  int
	dirs map[string]bool
	err  error
}

func newCPIO(w io.Writer) *cpioWriter {
	return &cpioWriter{w: w, dirs: map[string]bool{"": true, ".": true}}
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func (c *cpioWriter) header(name string, mode uint32, size int) {
	c.ino++
	h := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		c.ino, mode, 0, 0, 1, 0, size, 0, 0, 0, 0, len(name)+1, 0)
	c.write([]byte(h))
	c.write(append([]byte(name), 0))
	c.pad()
}

// mkdirAll adds every missing parent directory of name.
func (c *cpioWriter) mkdirAll(dir string) {
	dir = strings.TrimPrefix(path.Clean(dir), "/")
	if c.dirs[dir] {
		return
	}
	c.mkdirAll(path.Dir(dir))
	c.dirs[dir] = true
	c.header(dir, 0o040755, 0)
}

// File adds a regular file with the given content and permission bits.
func (c *cpioWriter) File(name string, perm uint32, data []byte) {
	name = strings.TrimPrefix(path.Clean(name), "/")
	c.mkdirAll(path.Dir(name))
	c.header(name, 0o100000|perm, len(data))
	c.write(data)
	c.pad()
}

// HostFile copies a host file, following symlinks, keeping its permission bits.
func (c *cpioWriter) HostFile(name, hostPath string) error {
	data, err := os.ReadFile(hostPath)
	if err != nil {
		return fmt.Errorf("cpio %s: %w", name, err)
	}
	st, err := os.Stat(hostPath)
	if err != nil {
		return fmt.Errorf("cpio %s: %w", name, err)
	}
	c.File(name, uint32(st.Mode().Perm()), data)
	return nil
}

// Symlink adds a symbolic link.
func (c *cpioWriter) Symlink(name, target string) {
	name = strings.TrimPrefix(path.Clean(name), "/")
	c.mkdirAll(path.Dir(name))
	c.header(name, 0o120777, len(target))
	c.write([]byte(target))
	c.pad()
}

// Dir adds an empty directory.
func (c *cpioWriter) Dir(name string) { c.mkdirAll(name) }

// Close writes the trailer and pads to a 512-byte boundary so another archive can follow.
func (c *cpioWriter) Close() error {
	c.header("TRAILER!!!", 0, 0)
	if r := c.n % 512; r != 0 {
		c.write(make([]byte, 512-r))
	}
	return c.err
}

// sortedKeys returns m's keys in order, for reproducible archives.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
