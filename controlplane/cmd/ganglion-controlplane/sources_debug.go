package main

import (
	"flag"
	"log/slog"
)

// This file adds --debug-listen to serve without touching serve.go: it wraps every registered
// source so that the flag is defined once and the listener starts when the chosen source is
// built. Go initialises a package's files in file-name order, and this name sorts after every
// source_*.go and sources.go, so each source is registered by the time this init runs.
func init() {
	var addr string
	for name, def := range sources {
		flags, build := def.flags, def.build
		sources[name] = sourceDef{
			flags: func(fs *flag.FlagSet) {
				if fs.Lookup("debug-listen") == nil {
					fs.StringVar(&addr, "debug-listen", "", "loopback host:port for pprof (/debug/pprof/); empty (the default) disables it")
				}
				flags(fs)
			},
			build: func(log *slog.Logger) (source, error) {
				if addr != "" {
					if _, _, err := startDebug(addr, log); err != nil {
						return nil, err
					}
				}
				return build(log)
			},
		}
	}
}
