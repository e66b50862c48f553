// Package brain assembles the controlplane's gRPC server: the agent stream, inspect, health and
// reflection, over one engine and hub. Sources feed the hub; the brain serves what it computes.
package brain

import (
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/inspect"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/grpcopts"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Options configure a Brain.
type Options struct {
	Compute compute.Options
	Stream  stream.Options
	Log     *slog.Logger
	// Auth is who may call what, and the listener's TLS. The zero value is refused; in-process
	// tests say Insecure.
	Auth auth.Config
	// Leases are the node leases inspect shows (bare-metal mode); nil in Kubernetes mode.
	Leases inspect.Leases
	// DeadAgentAfter is how long an agent's connection may stay silent before it is closed
	// (0: grpcopts.DeadAgentAfter).
	DeadAgentAfter time.Duration
}

// Brain is one controlplane replica.
type Brain struct {
	Hub      *stream.Hub
	Registry *prometheus.Registry
	grpc     *grpc.Server
	health   *health.Server
	log      *slog.Logger
}

// New builds a brain that answers NOT_SERVING until MarkSynced.
func New(opts Options) (*Brain, error) {
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	opts.Auth.Log, opts.Auth.Registerer = opts.Log, reg
	guard, err := auth.New(opts.Auth)
	if err != nil {
		return nil, err
	}
	hub := stream.NewHub(compute.NewEngine(opts.Compute), opts.Stream, stream.NewMetrics(reg))
	srv := grpc.NewServer(slices.Concat(stream.ServerOptions(), grpcopts.Server(opts.DeadAgentAfter), guard.ServerOptions())...)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	hs.SetServingStatus(v1.AgentService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_NOT_SERVING)
	v1.RegisterAgentServiceServer(srv, stream.NewServer(hub, opts.Log))
	v1.RegisterInspectServiceServer(srv, inspect.NewServer(hub, opts.Leases))
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return &Brain{Hub: hub, Registry: reg, grpc: srv, health: hs, log: opts.Log}, nil
}

// Ready says whether the sources are synced: the plaintext /readyz of probes that cannot speak
// TLS.
func (b *Brain) Ready() bool {
	select {
	case <-b.Hub.Synced():
		return true
	default:
		return false
	}
}

// GRPC returns the server, for more services to be registered before Serve.
func (b *Brain) GRPC() *grpc.Server { return b.grpc }

// MarkSynced records that the sources are synced and the first compute is done: agents are
// served from now on, and health answers SERVING.
func (b *Brain) MarkSynced() {
	b.Hub.MarkSynced()
	b.health.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	b.health.SetServingStatus(v1.AgentService_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	b.log.Info("sources synced: serving agents")
}

// Serve serves gRPC on lis until Stop.
func (b *Brain) Serve(lis net.Listener) error { return b.grpc.Serve(lis) }

// Stop ends every stream and the server.
func (b *Brain) Stop() {
	b.health.Shutdown()
	b.grpc.Stop()
}

// MetricsHandler serves the brain's Prometheus metrics.
func (b *Brain) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(b.Registry, promhttp.HandlerOpts{})
}
