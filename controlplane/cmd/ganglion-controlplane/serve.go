package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"google.golang.org/grpc"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
)

// runServe runs the brain until SIGINT or SIGTERM.
func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":7070", "gRPC address: agent stream, inspect, health, reflection")
	metrics := fs.String("metrics-listen", ":7071", "HTTP address of /metrics; empty disables it")
	sourceName := fs.String("source", "manifests", "the source of truth: "+sourceNames())
	for _, def := range sources {
		def.flags(fs)
	}
	proxyName := fs.String("proxy-name", "", "claim services labelled service.kubernetes.io/service-proxy-name=<this>")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	debugAddr := fs.String("debug-listen", "", "loopback host:port for pprof (/debug/pprof/); empty (the default) disables it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log, err := newLogger(*logLevel)
	if err != nil {
		return err
	}
	if *debugAddr != "" {
		if _, _, err := startDebug(*debugAddr, log); err != nil {
			return err
		}
	}
	def, ok := sources[*sourceName]
	if !ok {
		return fmt.Errorf("--source: unknown %q (want %s)", *sourceName, sourceNames())
	}
	src, err := def.build(log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	opts := brain.Options{Compute: compute.Options{ProxyName: *proxyName}, Log: log}
	if h, ok := src.(interface{ Hooks() stream.Hooks }); ok {
		opts.Stream.Hooks = h.Hooks()
	}
	b := brain.New(opts)
	lis, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if *metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", b.MetricsHandler())
		ms := &http.Server{Addr: *metrics, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := ms.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics server", "err", err)
			}
		}()
		defer ms.Close()
	}
	if r, ok := src.(interface{ Register(*grpc.Server) }); ok {
		r.Register(b.GRPC())
	}
	srcErr := make(chan error, 1)
	go func() { srcErr <- src.Run(ctx, b.Hub, b.MarkSynced) }()
	go func() {
		<-ctx.Done()
		b.Stop()
	}()
	log.Info("brain listening", "grpc", lis.Addr().String(), "metrics", *metrics, "source", *sourceName)
	go func() {
		if err := b.Serve(lis); err != nil {
			srcErr <- err
		}
	}()
	select {
	case err := <-srcErr:
		b.Stop()
		return err
	case <-ctx.Done():
		return nil
	}
}

func newLogger(level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})), nil
}
