package main

import (
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// report prints the image's name, digest and size: what a release note or a signature names.
func report(img v1.Image, ref, out string) error {
	digest, err := img.Digest()
	if err != nil {
		return fmt.Errorf("image digest: %w", err)
	}
	layers, err := img.Layers()
	if err != nil {
		return fmt.Errorf("image layers: %w", err)
	}
	var compressed int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return fmt.Errorf("image layer size: %w", err)
		}
		compressed += n
	}
	fmt.Printf("image %s@%s in %s (%d layer(s), %.1f MiB compressed)\n", ref, digest, out, len(layers), float64(compressed)/(1<<20))
	return nil
}
