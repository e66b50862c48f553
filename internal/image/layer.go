// Package image builds Ganglion's container image without a Docker daemon, as ko does: an empty
// base and one layer holding the static binaries and the few files they need. Every byte of the
// result is a function of its inputs (sorted entries, fixed times, owners and modes), so building
// the same binaries twice gives the same digest and anyone can check an image against a commit.
package image

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is one entry of the image's root filesystem.
type File struct {
	// Path is absolute and clean ("/usr/local/bin/ganglion-agent").
	Path string
	// Mode holds the permission bits (and sticky bit); a directory has Dir set and no Data.
	Mode int64
	Dir  bool
	Data []byte
}

// layerTar writes files as one tar stream: parents before children, sorted by path, owned by root,
// stamped with created. Missing parent directories are added with mode 0755, so the layer is a
// complete tree whatever order the caller listed.
func layerTar(files []File, created time.Time) ([]byte, error) {
	all, err := withParents(files)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range all {
		hdr := &tar.Header{
			Name: strings.TrimPrefix(f.Path, "/"), Mode: f.Mode, ModTime: created,
			Typeflag: tar.TypeReg, Size: int64(len(f.Data)), Format: tar.FormatPAX,
		}
		if f.Dir {
			hdr.Typeflag, hdr.Name, hdr.Size = tar.TypeDir, hdr.Name+"/", 0
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.Path, err)
		}
		if _, err := tw.Write(f.Data); err != nil {
			return nil, fmt.Errorf("layer entry %s: %w", f.Path, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	return buf.Bytes(), nil
}

// withParents checks the paths, adds missing parent directories and sorts the lot.
func withParents(files []File) ([]File, error) {
	byPath := map[string]File{}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("image file %q: path must be absolute and clean, not the root", f.Path)
		}
		if _, dup := byPath[f.Path]; dup {
			return nil, fmt.Errorf("image file %q: listed twice", f.Path)
		}
		if f.Dir && len(f.Data) > 0 {
			return nil, fmt.Errorf("image file %q: a directory with data", f.Path)
		}
		byPath[f.Path] = f
	}
	for _, f := range files {
		for dir := path.Dir(f.Path); dir != "/"; dir = path.Dir(dir) {
			if p, ok := byPath[dir]; ok && !p.Dir {
				return nil, fmt.Errorf("image file %q: parent %s is a file", f.Path, dir)
			}
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = File{Path: dir, Dir: true, Mode: 0o755}
			}
		}
	}
	out := make([]File, 0, len(byPath))
	for _, f := range byPath {
		out = append(out, f)
	}
	// Sorting by path puts every directory before its children ("/a" < "/a/b").
	slices.SortFunc(out, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return out, nil
}

// Layer is files as one OCI layer (gzip at a fixed level, so its digest is fixed too).
func Layer(files []File, created time.Time) (v1.Layer, error) {
	b, err := layerTar(files, created)
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil },
		tarball.WithMediaType(types.OCILayer), tarball.WithCompressedCaching)
}
