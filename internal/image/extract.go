package image

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Extract unpacks img's flattened root filesystem into dir (which must exist), as a container
// runtime would: directories, regular files and symbolic links with their modes. Writes go
// through an os.Root, so no entry can land outside dir.
func Extract(img v1.Image, dir string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("extract into %s: %w", dir, err)
	}
	defer root.Close()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("extract into %s: %w", dir, err)
		}
		if err := extractEntry(root, hdr, tr); err != nil {
			return fmt.Errorf("extract %s into %s: %w", hdr.Name, dir, err)
		}
	}
}

// extractEntry writes one tar entry under root.
func extractEntry(root *os.Root, hdr *tar.Header, r io.Reader) error {
	name := path.Clean(hdr.Name)
	if name == "." || name == "/" {
		return nil
	}
	mode := fs.FileMode(hdr.Mode).Perm() | stickyOf(hdr.Mode)
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.MkdirAll(name, 0o755); err != nil {
			return err
		}
		return root.Chmod(name, mode)
	case tar.TypeSymlink:
		return root.Symlink(hdr.Linkname, name)
	case tar.TypeReg:
		f, err := root.OpenFile(name, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
		if err != nil {
			return err
		}
		_, err = io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		return root.Chmod(name, mode)
	}
	return fmt.Errorf("entry type %q: not supported", hdr.Typeflag)
}

// stickyOf carries a tar mode's sticky bit (/tmp) into an fs.FileMode.
func stickyOf(mode int64) fs.FileMode {
	if mode&0o1000 != 0 {
		return fs.ModeSticky
	}
	return 0
}
