package main

import (
	"context"
	"flag"
	"log/slog"
	"slices"
	"strings"

	"github.com/ganglion-proxy/ganglion/controlplane/stream"
)

// source feeds the hub until ctx ends, calling synced once it has read everything there is: the
// brain serves agents only after that.
type source interface {
	Run(ctx context.Context, hub *stream.Hub, synced func()) error
}

// sourceDef is one kind of source: its flags, and how it is built from them. Each kind registers
// itself from its own file, so adding one touches no other.
type sourceDef struct {
	flags func(*flag.FlagSet)
	build func(*slog.Logger) (source, error)
}

var sources = map[string]sourceDef{}

func sourceNames() string {
	var names []string
	for n := range sources {
		names = append(names, n)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}
