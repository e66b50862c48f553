// Command ganglion-agent is Ganglion's node agent: it streams its node's desired state from the
// brain, applies it to the kernel, and serves the node-local health and metrics endpoints.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/ipvs"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftables"
	"github.com/ganglion-proxy/ganglion/nodeagent/node"
	"github.com/ganglion-proxy/ganglion/nodeagent/probe"
	"github.com/ganglion-proxy/ganglion/nodeagent/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if len(os.Args) == 2 && (os.Args[1] == "--version" || os.Args[1] == "version") {
		fmt.Println("ganglion-agent", version)
		return
	}
	if err := run(os.Args[1:]); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "ganglion-agent:", err)
		os.Exit(1)
	}
}

type flags struct {
	nodeName, brains, backend, logLevel  string
	nodeIPs, nodePortAddresses, podCIDRs string
	zone, ipvsScheduler                  string
	strictARP                            bool
	healthzAddr, metricsAddr             string
	staleAfter, reconcileEvery           time.Duration
	firstUpdate, returnAfter             time.Duration
	execAllow                            []string // absolute paths exec health checks may run
	execCred                             *syscall.Credential
	tls                                  tlsFlags
	dns                                  dnsFlags
	announce                             announceFlags
}

func parseFlags(args []string) (*flags, error) {
	f := &flags{}
	fs := flag.NewFlagSet("ganglion-agent", flag.ContinueOnError)
	hostname, _ := os.Hostname()
	fs.StringVar(&f.nodeName, "node-name", envOr("NODE_NAME", hostname), "this node's name (env NODE_NAME)")
	fs.StringVar(&f.brains, "brain", os.Getenv("GANGLION_BRAIN"), "comma-separated brain addresses host:port (env GANGLION_BRAIN)")
	fs.StringVar(&f.backend, "dataplane", "nftables", "nftables, ipvs, or recording (in memory: programs nothing)")
	fs.StringVar(&f.ipvsScheduler, "ipvs-scheduler", "rr", "with --dataplane ipvs: the scheduler of services that name none")
	fs.BoolVar(&f.strictARP, "ipvs-strict-arp", false, "with --dataplane ipvs: set arp_ignore=1 and arp_announce=2")
	fs.StringVar(&f.nodeIPs, "node-ip", "", "comma-separated node addresses for NodePorts (default: every global unicast address)")
	fs.StringVar(&f.nodePortAddresses, "nodeport-addresses", "", "comma-separated CIDRs: NodePorts listen only on node addresses inside them")
	fs.StringVar(&f.podCIDRs, "pod-cidr", "", "comma-separated CIDRs of this node's pods")
	fs.StringVar(&f.zone, "zone", "", "this node's zone, registered with the brain in bare-metal mode")
	fs.StringVar(&f.healthzAddr, "healthz-bind-address", "0.0.0.0:10256", "address of /healthz, /livez and /proxyMode; empty disables")
	fs.StringVar(&f.metricsAddr, "metrics-bind-address", "127.0.0.1:10249", "address of /metrics; empty disables")
	fs.DurationVar(&f.reconcileEvery, "reconcile-interval", 30*time.Second, "how often to repair kernel objects changed from outside")
	fs.DurationVar(&f.staleAfter, "stale-after", 2*time.Minute, "report unhealthy after this long without a brain")
	fs.DurationVar(&f.firstUpdate, "brain-first-update-timeout", 30*time.Second, "move to the next brain when one sends nothing this long after the stream opens")
	fs.DurationVar(&f.returnAfter, "brain-return-after", time.Minute, "on a fallback brain, check about this often whether a preferred one serves again")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	f.tls.register(fs)
	f.dns.register(fs)
	f.announce.register(fs)
	execAllow := fs.String("exec-allow", "", "comma-separated absolute paths of the commands exec health checks may run (default none: exec checks fail); never a shell or interpreter")
	execUser := fs.String("exec-user", "65534:65534", "uid:gid exec health checks run as (default nobody); empty runs them as the agent's user (root)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	f.execAllow = splitList(*execAllow)
	if err := probe.ValidateExecAllow(f.execAllow); err != nil {
		return nil, fmt.Errorf("--exec-allow: %w", err)
	}
	var err error
	if f.execCred, err = parseCredential(*execUser); err != nil {
		return nil, fmt.Errorf("--exec-user: %w", err)
	}
	if err := f.dns.parse(); err != nil {
		return nil, err
	}
	switch {
	case f.brains == "":
		return nil, errors.New("--brain: required")
	case f.nodeName == "":
		return nil, errors.New("--node-name: required")
	}
	return f, nil
}

func run(args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	setGCPercent()
	dialOpts, expiry, err := f.tls.dial(strings.Split(f.brains, ","), log)
	if err != nil {
		return err
	}
	self, err := nodeConfig(f)
	if err != nil {
		return err
	}
	dp, err := openDataplane(f, self, log)
	if err != nil {
		return err
	}
	defer dp.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	metrics := node.NewMetrics()
	backend := dp
	dp, zone, err := startDNS(ctx, f, dp, metrics.Registry, log)
	if err != nil {
		return err
	}
	if expiry != nil {
		metrics.Registry.MustRegister(expiry)
	}
	// The backend itself: the DNS gate that wraps it does not pass the method on.
	if r, ok := backend.(dataplane.ReconcileReporter); ok {
		metrics.Registry.MustRegister(r.ReconcileMetrics())
	}
	var agent *stream.Agent
	health := &node.Health{Mode: f.backend, StaleAfter: f.staleAfter, Status: func() node.Status {
		st := agent.Status()
		return node.Status{Synced: st.Synced, LastSync: st.LastSync, Connected: st.Brain != "", DisconnectedSince: st.DisconnectedSince}
	}}
	hc := node.NewHealthChecks(log, health.Healthy)
	defer hc.Close()
	prober := probe.New(func(r *v1.EndpointHealth) {
		log.Info("endpoint probe changed", "service", r.Namespace+"/"+r.Service, "endpoint", r.Address, "ready", r.Ready)
		agent.ReportHealth(r)
	}, probe.Options{ExecAllow: f.execAllow, ExecCredential: f.execCred, Log: log})
	defer prober.Close()
	announcer, stopAnnouncing, err := startAnnouncer(ctx, f, self.Addresses, metrics.Registry, log)
	if err != nil {
		return err
	}
	defer stopAnnouncing()
	info := &v1.NodeInfo{Zone: f.zone, ExecCommands: prober.ExecAllowed()}
	for _, a := range self.Addresses {
		info.Addresses = append(info.Addresses, a.String())
	}
	cfg := stream.Config{
		NodeName:           f.nodeName,
		AgentVersion:       version,
		Brains:             strings.Split(f.brains, ","),
		DialOptions:        dialOpts,
		FirstUpdateTimeout: f.firstUpdate,
		ReturnAfter:        f.returnAfter,
		Dataplane:          dp,
		Node:               info,
		Capabilities:       capabilities(zone),
		DNS:                dnsRecords(zone),
		Prober:             prober,
		Log:                log,
		// A whole snapshot is built and committed at once (one kernel transaction); its garbage
		// would otherwise stay in the process's RSS until the runtime scavenges it, for minutes.
		OnSnapshot: debug.FreeOSMemory,
		OnApply: func(c dataplane.Change, took time.Duration, failed map[string]error) {
			metrics.Observe(c, took, failed)
			hc.Update(c, failed)
		},
	}
	if announcer != nil { // a nil *Announcer in the interface would not read as nil
		cfg.Announcer = announcer
	}
	agent = stream.New(cfg)
	serve(ctx, log, f.healthzAddr, health.Handler())
	serve(ctx, log, f.metricsAddr, metricsMux(metrics, backend))
	go reconcileLoop(ctx, log, dp, f.reconcileEvery)
	log.Info("agent starting", "node", f.nodeName, "brains", f.brains, "dataplane", f.backend)
	return agent.Run(ctx)
}

// reconcileLoop repairs kernel objects changed from outside.
func reconcileLoop(ctx context.Context, log *slog.Logger, dp dataplane.Dataplane, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := dp.Reconcile(ctx); err != nil {
				log.Error("reconcile", "err", err)
			}
		}
	}
}

// nodeConfig reads what the flags say of this node.
func nodeConfig(f *flags) (dataplane.Node, error) {
	n := dataplane.Node{Name: f.nodeName}
	var err error
	if n.Addresses, err = parseAddrs(f.nodeIPs); err != nil {
		return n, fmt.Errorf("--node-ip: %w", err)
	}
	if len(n.Addresses) == 0 {
		if n.Addresses, err = localAddrs(); err != nil {
			return n, fmt.Errorf("--node-ip: %w", err)
		}
	}
	if n.NodePortAddresses, err = parsePrefixes(f.nodePortAddresses); err != nil {
		return n, fmt.Errorf("--nodeport-addresses: %w", err)
	}
	if n.PodCIDRs, err = parsePrefixes(f.podCIDRs); err != nil {
		return n, fmt.Errorf("--pod-cidr: %w", err)
	}
	return n, nil
}

func openDataplane(f *flags, n dataplane.Node, log *slog.Logger) (dataplane.Dataplane, error) {
	switch f.backend {
	case "recording":
		return dataplane.NewRecording(), nil
	case "nftables":
		return nftables.New(n, nftables.WithLogger(log))
	case "ipvs":
		return ipvs.New(context.Background(), ipvs.Options{Node: n, Scheduler: f.ipvsScheduler, StrictARP: f.strictARP})
	default:
		return nil, fmt.Errorf("--dataplane: unknown backend %q", f.backend)
	}
}

func serve(ctx context.Context, log *slog.Logger, addr string, h http.Handler) {
	if addr == "" {
		return
	}
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("server", "addr", addr, "err", err)
		}
	}()
	go func() { <-ctx.Done(); _ = srv.Close() }()
}

func parseAddrs(s string) ([]netip.Addr, error) {
	var out []netip.Addr
	for _, f := range splitList(s) {
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func parsePrefixes(s string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range splitList(s) {
		p, err := netip.ParsePrefix(f)
		if err != nil {
			return nil, err
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// localAddrs returns the global unicast addresses of this network namespace, except those on
// devices Ganglion owns (the IPVS dummy device holds service addresses, not the node's).
func localAddrs() ([]netip.Addr, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, ifc := range ifaces {
		if strings.HasPrefix(ifc.Name, "ganglion") {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, err
		}
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().IsGlobalUnicast() {
				out = append(out, p.Addr())
			}
		}
	}
	return out, nil
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// parseCredential reads uid:gid. Only root may run a child as someone else, so an agent that is
// not root keeps its own user.
func parseCredential(s string) (*syscall.Credential, error) {
	if s == "" || os.Geteuid() != 0 {
		return nil, nil
	}
	u, g, ok := strings.Cut(s, ":")
	uid, err1 := strconv.ParseUint(u, 10, 32)
	gid, err2 := strconv.ParseUint(g, 10, 32)
	if !ok || err1 != nil || err2 != nil {
		return nil, fmt.Errorf("%q is not uid:gid", s)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
