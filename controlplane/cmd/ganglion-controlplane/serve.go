package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/announceconfig"
	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/inspect"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/grpcopts"
)

// runServe runs the brain until SIGINT or SIGTERM.
func runServe(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", ":7070", "gRPC address: agent stream, inspect, health, reflection")
	metrics := fs.String("metrics-listen", "127.0.0.1:7071", "HTTP address of /metrics; empty disables it")
	healthAddr := fs.String("health-listen", ":7072", "plaintext HTTP address of /healthz and /readyz for probes that cannot speak TLS; empty disables it")
	var sec securityFlags
	sec.register(fs)
	var streamOpts stream.Options
	fs.DurationVar(&streamOpts.HelloTimeout, "hello-timeout", 10*time.Second, "cut an agent stream whose first message has not come in this time")
	fs.IntVar(&streamOpts.MaxStreams, "max-streams", 10000, "agent streams served at once, at most")
	fs.IntVar(&streamOpts.MaxStreamsPerNode, "max-streams-per-node", 2, "agent streams of one node at once, at most (a restarting agent overlaps its old stream)")
	sourceName := fs.String("source", "manifests", "the source of truth: "+sourceNames())
	for _, def := range sources {
		def.flags(fs)
	}
	deadAgent := fs.Duration("agent-dead-after", grpcopts.DeadAgentAfter, "close an agent connection silent this long (pinged meanwhile): a node that vanishes without a word hands its ARP/NDP addresses over within it")
	announceConfig := fs.String("announce-config", "", "YAML file of the announcement settings (l2, bgp groups, classes and pools): nodes make the network send service addresses to them; empty announces nothing")
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

	secured, err := sec.secure(*listen, log)
	if err != nil {
		return err
	}
	opts := brain.Options{Compute: compute.Options{ProxyName: *proxyName}, Log: log, Auth: secured.auth, Stream: streamOpts, DeadAgentAfter: *deadAgent}
	if *announceConfig != "" {
		// The store holds bare-metal services, whose VIPs (cluster IPs) outside clients use.
		if opts.Compute.Announce, err = announceconfig.Load(*announceConfig, *sourceName == "etcd"); err != nil {
			return err
		}
	}
	if h, ok := src.(interface{ Hooks() stream.Hooks }); ok {
		opts.Stream.Hooks = h.Hooks()
	}
	if l, ok := src.(inspect.Leases); ok {
		opts.Leases = l
	}
	if t, ok := src.(interface {
		Tokens() auth.TokenAuthenticator
	}); ok {
		opts.Auth.Tokens = t.Tokens()
	}
	b, err := brain.New(opts)
	if err != nil {
		return err
	}
	if secured.expiry != nil {
		b.Registry.MustRegister(secured.expiry)
	}
	if c, ok := src.(interface{ Collectors() []prometheus.Collector }); ok {
		b.Registry.MustRegister(c.Collectors()...)
	}
	lis, err := net.Listen("tcp", secured.listen)
	if err != nil {
		return fmt.Errorf("--listen: %w", err)
	}
	if *metrics != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", b.MetricsHandler())
		defer serveHTTP(*metrics, mux, log)()
	}
	if *healthAddr != "" {
		defer serveHTTP(*healthAddr, probeHandler(b.Ready), log)()
	}
	if r, ok := src.(interface {
		Register(*grpc.Server, compute.Options)
	}); ok {
		r.Register(b.GRPC(), opts.Compute)
	}
	srcErr := make(chan error, 1)
	go func() { srcErr <- src.Run(ctx, b.Hub, b.MarkSynced) }()
	go func() {
		<-ctx.Done()
		b.Stop()
	}()
	log.Info("brain listening", "grpc", lis.Addr().String(), "tls", !opts.Auth.Insecure, "metrics", *metrics, "health", *healthAddr, "source", *sourceName)
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

// serveHTTP serves h on addr in the background; the returned func closes it.
func serveHTTP(addr string, h http.Handler, log *slog.Logger) func() error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server", "addr", addr, "err", err)
		}
	}()
	return srv.Close
}

// probeHandler answers kubelet-style probes: /healthz while the process runs, /readyz once the
// sources are synced. It tells nothing else.
func probeHandler(ready func() bool) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready() {
			http.Error(w, "sources not synced", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	return mux
}
