package image

import (
	"fmt"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BinDir is where the binaries go; deploy/'s manifests name them there.
const BinDir = "/usr/local/bin"

// Spec is what goes into an image.
type Spec struct {
	// Binaries are host paths of static executables, copied to BinDir under their base names.
	Binaries []string
	// Entrypoint is the default command (the manifests set their own).
	Entrypoint []string
	// Version is recorded as the image's version label.
	Version string
	// Created stamps the image config and every layer entry: SOURCE_DATE_EPOCH, or the Unix epoch.
	Created time.Time
	// OS and Architecture of the binaries (GOOS, GOARCH).
	OS, Architecture string
}

// rootFiles are what the binaries need besides themselves: users for the brain (65532, as
// distroless names it) and for the agent's exec checks (--exec-user defaults to nobody, 65534),
// and a world-writable /tmp.
func rootFiles() []File {
	return []File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\n" +
			"nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n" +
			"nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n")},
		{Path: "/home/nonroot", Dir: true, Mode: 0o700},
		{Path: "/root", Dir: true, Mode: 0o700},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
	}
}

// Files lists the image's root filesystem: rootFiles and the binaries read from the host.
func (s Spec) Files() ([]File, error) {
	files := rootFiles()
	for _, b := range s.Binaries {
		data, err := os.ReadFile(b)
		if err != nil {
			return nil, fmt.Errorf("image binary: %w", err)
		}
		files = append(files, File{Path: path.Join(BinDir, path.Base(b)), Mode: 0o755, Data: data})
	}
	return files, nil
}

// Build makes the image: an empty base, one layer of s.Files(), an OCI manifest and config.
func Build(s Spec) (v1.Image, error) {
	files, err := s.Files()
	if err != nil {
		return nil, err
	}
	layer, err := Layer(files, s.Created)
	if err != nil {
		return nil, err
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: s.Created}, CreatedBy: "ganglion-image", Comment: "static binaries " + s.Version,
	}})
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: s.Created}
	cf.OS, cf.Architecture = s.OS, s.Architecture
	cf.Config.Entrypoint = s.Entrypoint
	cf.Config.Env = []string{"PATH=" + BinDir + ":/usr/bin:/bin"}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.version": s.Version,
		"org.opencontainers.image.source":  "https://github.com/ganglion-proxy/ganglion",
	}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	return img, nil
}
