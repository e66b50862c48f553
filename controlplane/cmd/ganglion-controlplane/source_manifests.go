package main

import (
	"errors"
	"flag"
	"log/slog"

	"github.com/ganglion-proxy/ganglion/controlplane/source/file"
)

func init() {
	var path string
	sources["manifests"] = sourceDef{
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&path, "manifests", "", "with --source=manifests: a Kubernetes manifest file or directory of *.yaml, re-read when it changes")
		},
		build: func(log *slog.Logger) (source, error) {
			if path == "" {
				return nil, errors.New("--manifests: required with --source=manifests")
			}
			return &file.Source{Path: path, Log: log}, nil
		},
	}
}
