// Command ganglion-image builds Ganglion's container image from static binaries without a Docker
// daemon: an OCI image layout directory (for `crane push`) and a tarball for `docker load`.
//
//	ganglion-image -version v1.2.3 -out bin/image -tarball bin/image.tar bin/ganglion-controlplane bin/ganglion-agent bin/ganglionctl
//
// The build time is SOURCE_DATE_EPOCH (seconds), else the Unix epoch: the same binaries give the
// same digest.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/image"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "ganglion-image:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("ganglion-image", flag.ContinueOnError)
	out := fs.String("out", "bin/image", "OCI image layout directory to write (replaced)")
	tarball := fs.String("tarball", "", "also write a docker-loadable tarball here")
	repo := fs.String("repo", "ghcr.io/ganglion-proxy/ganglion", "image name, tagged with -version")
	version := fs.String("version", "dev", "version label and tag")
	arch := fs.String("arch", "amd64", "the binaries' GOARCH")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("binaries: none given")
	}
	created := time.Unix(0, 0).UTC()
	if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", v, err)
		}
		created = time.Unix(sec, 0).UTC()
	}
	img, err := image.Build(image.Spec{Binaries: fs.Args(), Version: *version, Created: created, OS: "linux",
		Architecture: *arch, Entrypoint: []string{image.BinDir + "/ganglion-controlplane"}})
	if err != nil {
		return err
	}
	ref := *repo + ":" + *version
	if err := image.WriteLayout(*out, img, ref); err != nil {
		return err
	}
	if *tarball != "" {
		if err := image.WriteTarball(*tarball, img, ref); err != nil {
			return err
		}
	}
	return report(img, ref, *out)
}
