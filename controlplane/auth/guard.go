package auth

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// TokenAuthenticator vouches for a bearer token, as the Kubernetes TokenReview API does.
type TokenAuthenticator interface {
	// AuthenticateToken returns the node identity a valid token proves, or an error saying why
	// it proves nothing.
	AuthenticateToken(ctx context.Context, token string) (Identity, error)
}

// Config configures a Guard.
type Config struct {
	// TLS is the listener's TLS configuration. Nil only with Insecure.
	TLS *tls.Config
	// Insecure serves plaintext and treats every caller as an administrator: only for a brain
	// bound to loopback (the caller enforces that).
	Insecure bool
	// Tokens, when set, accepts bearer tokens from agents (Kubernetes mode).
	Tokens TokenAuthenticator
	Log    *slog.Logger
	// Registerer receives the refusal counter; nil registers nothing.
	Registerer prometheus.Registerer
}

// Guard authenticates every call to a gRPC server and authorizes it against the policy.
type Guard struct {
	cfg     Config
	refused *prometheus.CounterVec
}

// New returns a guard. Without TLS it must be told Insecure.
func New(cfg Config) (*Guard, error) {
	if cfg.TLS == nil && !cfg.Insecure {
		return nil, errors.New("auth: a TLS configuration is required (or an explicit insecure mode)")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	g := &Guard{cfg: cfg, refused: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "ganglion_auth_refusals_total",
		Help: "Calls and messages refused by authentication or authorization, by method and reason.",
	}, []string{"method", "reason"})}
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(g.refused)
	}
	return g, nil
}

// ServerOptions are the transport credentials and interceptors of a guarded server.
func (g *Guard) ServerOptions() []grpc.ServerOption {
	creds := insecure.NewCredentials()
	if !g.cfg.Insecure {
		creds = credentials.NewTLS(g.cfg.TLS)
	}
	return []grpc.ServerOption{
		grpc.Creds(creds),
		grpc.InTapHandle(g.tap),
		grpc.ChainUnaryInterceptor(g.unary),
		grpc.ChainStreamInterceptor(g.stream),
	}
}

// tap refuses, before its message is read, a call that a peer with neither a verified
// certificate nor a token may not make: gRPC reads and decodes a request (up to the maximum
// message size) before interceptors run, so without this anyone could make the brain read and
// hold 64 MiB per call. It runs on the connection's reader, so it checks only what is at hand;
// the interceptors still decide every call in full.
func (g *Guard) tap(ctx context.Context, info *tap.Info) (context.Context, error) {
	if g.cfg.Insecure || allowed(Anonymous, info.FullMethodName) || len(info.Header.Get("authorization")) > 0 {
		return ctx, nil
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			return ctx, nil
		}
	}
	return ctx, g.refuse(ctx, info.FullMethodName, "unauthenticated", codes.Unauthenticated, "authentication required")
}

func (g *Guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := g.admit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (g *Guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := g.admit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &identifiedStream{ServerStream: ss, ctx: ctx})
}

// admit authenticates the caller and checks the policy; the returned context carries the
// identity and this guard, for refusals made deeper down (a node naming another node).
func (g *Guard) admit(ctx context.Context, method string) (context.Context, error) {
	id, err := g.authenticate(ctx)
	ctx = context.WithValue(NewContext(ctx, id), guardKey{}, g)
	if err != nil {
		return ctx, g.refuse(ctx, method, "bad_credentials", codes.Unauthenticated, err.Error())
	}
	if !allowed(id, method) {
		if id.Role == "" {
			return ctx, g.refuse(ctx, method, "unauthenticated", codes.Unauthenticated, "authentication required")
		}
		return ctx, g.refuse(ctx, method, "forbidden", codes.PermissionDenied, string(id.Role)+" may not call "+method)
	}
	return ctx, nil
}

// authenticate finds who the caller is: a verified client certificate, else a bearer token when
// tokens are accepted, else nobody.
func (g *Guard) authenticate(ctx context.Context) (Identity, error) {
	if g.cfg.Insecure {
		return insecureIdentity, nil
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			role, name, err := pki.IdentityOf(ti.State.VerifiedChains[0][0])
			if err != nil {
				return Anonymous, err
			}
			return Identity{Role: role, Name: name, Via: "x509"}, nil
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if vals := md.Get("authorization"); len(vals) > 0 {
		tok, ok := strings.CutPrefix(vals[0], "Bearer ")
		if !ok || g.cfg.Tokens == nil {
			return Anonymous, errors.New("bearer tokens are not accepted here")
		}
		return g.cfg.Tokens.AuthenticateToken(ctx, tok)
	}
	return Anonymous, nil
}

func (g *Guard) refuse(ctx context.Context, method, reason string, code codes.Code, msg string) error {
	id := FromContext(ctx)
	addr := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	g.refused.WithLabelValues(method, reason).Inc()
	g.cfg.Log.Warn("refused", "identity", id.String(), "peer", addr, "method", method, "reason", reason, "detail", msg)
	return status.Error(code, msg)
}

type guardKey struct{}

// Refuse logs and counts a refusal decided past the policy (a node asking for another node's
// stream, a health report for an endpoint the node was not asked to probe) and returns the
// PermissionDenied error to send.
func Refuse(ctx context.Context, method, reason, msg string) error {
	if g, ok := ctx.Value(guardKey{}).(*Guard); ok {
		return g.refuse(ctx, method, reason, codes.PermissionDenied, msg)
	}
	return status.Error(codes.PermissionDenied, msg)
}

// Count counts a refusal that ends no call (a message dropped), with its log line.
func Count(ctx context.Context, method, reason, msg string) { _ = Refuse(ctx, method, reason, msg) }

type identifiedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *identifiedStream) Context() context.Context { return s.ctx }
