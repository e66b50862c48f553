// Package bgp is the node agent's BGP speaker: it peers with the routers the brain names and
// advertises a host route (/32, /128, next hop self) for each outside address the node attracts.
// It embeds GoBGP as a library; it opens no listener (neither GoBGP's gRPC API nor TCP 179), so
// it only makes outgoing sessions.
//
// A session carries the routes of its own family: IPv4 routes over IPv4 sessions, IPv6 routes
// over IPv6 sessions. A node that must attract IPv6 addresses peers over IPv6 too.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"sync"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/prometheus/client_golang/prometheus"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Config is what a Speaker needs besides the brain's BGPConfig.
type Config struct {
	// NodeAddresses are the node's own addresses: the router ID falls back to the first IPv4 one.
	NodeAddresses []netip.Addr
	// Log receives peer state changes; GoBGP's own chatter goes to its debug level. Nil: discard.
	Log *slog.Logger
	// Registerer gets the speaker's metrics; may be nil.
	Registerer prometheus.Registerer
}

// PeerStatus is one peer's session as GoBGP sees it.
type PeerStatus struct {
	Address netip.Addr
	ASN     uint32
	// State is the BGP FSM state in lower case: idle, connect, active, opensent, openconfirm,
	// established.
	State string
	// Up is State == "established".
	Up bool
}

// Speaker is the node's BGP speaker. Its methods are safe for concurrent use.
type Speaker struct {
	cfg Config
	log *slog.Logger

	mu sync.Mutex
	// srv is created by the first Set with a config and kept for the Speaker's life: GoBGP's
	// Serve loop never returns, so a new server per restart would leak one.
	srv *server.BgpServer
	// running: StartBgp done and not stopped since; then global is what it was started with.
	running bool
	global  global
	// peers are the neighbors applied to GoBGP.
	peers map[netip.Addr]peer
	// comms are the communities the advertised paths carry.
	comms []community
	// paths maps each advertised route to its GoBGP path UUID, for the withdrawal.
	paths map[netip.Addr][]byte
	// routes is len(paths), read by the metrics collector without taking mu.
	routes prometheus.Gauge
}

// New returns a Speaker that starts nothing until the first Set with a config.
func New(cfg Config) *Speaker {
	l := cfg.Log
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	s := &Speaker{cfg: cfg, log: l.With("component", "bgp"), peers: map[netip.Addr]peer{},
		paths: map[netip.Addr][]byte{}}
	s.routes = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ganglion_announce_bgp_routes",
		Help: "Host routes the node's BGP speaker advertises.",
	})
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(s.routes, &peerCollector{s: s})
	}
	return s
}

// Set makes the speaker peer as conf says and advertise exactly routes (host routes: /32 for
// IPv4, /128 for IPv6, next hop self), withdrawing the rest. conf nil: stop all peering, with a
// NOTIFICATION so the peers drop the routes at once (the brain took them away; graceful restart
// is for an agent that comes back). Changing the local ASN or router ID restarts the BGP
// server; adding, removing or changing a peer touches only that peer. The same call twice
// changes nothing.
//
// An invalid conf or route (ErrInvalidConfig) changes nothing. A failure to apply part of a
// valid one leaves the rest applied; the next Set retries what failed.
func (s *Speaker) Set(ctx context.Context, conf *v1.BGPConfig, routes []netip.Addr) error {
	if conf == nil {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.stopLocked(ctx, false)
	}
	d, err := parseConfig(conf, s.cfg.NodeAddresses)
	if err != nil {
		return err
	}
	rs, err := hostRoutes(routes)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		s.srv = server.NewBgpServer(server.LoggerOption(slogAdapter{s.log}))
		go s.srv.Serve()
		s.watchPeers()
	}
	started := false
	if !s.running || s.global != d.global {
		if err := s.startLocked(ctx, d.global); err != nil {
			return err
		}
		started = true
	}
	return errors.Join(s.setPeersLocked(ctx, d.peers, started), s.setPathsLocked(ctx, rs, d.communities))
}

// startLocked (re)starts GoBGP with g: GoBGP fixes the ASN and router ID at StartBgp.
func (s *Speaker) startLocked(ctx context.Context, g global) error {
	if s.running {
		s.log.Info("restarting the BGP server", "asn", g.asn, "router_id", g.routerID,
			"old_asn", s.global.asn, "old_router_id", s.global.routerID)
		if err := s.stopLocked(ctx, false); err != nil {
			return err
		}
	}
	if err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: apiGlobal(g)}); err != nil {
		return fmt.Errorf("start BGP (asn %d, router id %s): %w", g.asn, g.routerID, err)
	}
	s.running, s.global = true, g
	return nil
}

// setPeersLocked makes GoBGP's neighbors want. A changed peer is deleted and added again: what
// can change (ASN, password, timers, capabilities) needs a new session anyway. started: the
// server has just (re)started, so its peers are told we restarted (see apiPeer).
func (s *Speaker) setPeersLocked(ctx context.Context, want map[netip.Addr]peer, started bool) error {
	var errs []error
	for _, a := range slices.SortedFunc(maps.Keys(s.peers), netip.Addr.Compare) {
		if w, ok := want[a]; ok && w == s.peers[a] {
			continue
		}
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			errs = append(errs, fmt.Errorf("delete peer %s: %w", a, err))
			continue
		}
		delete(s.peers, a)
		s.log.Info("BGP peer removed", "peer", a)
	}
	for _, a := range slices.SortedFunc(maps.Keys(want), netip.Addr.Compare) {
		p := want[a]
		if _, ok := s.peers[a]; ok {
			continue // unchanged, or its delete failed above
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: apiPeer(p, started)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s: %w", a, err))
			continue
		}
		s.peers[a] = p
		s.log.Info("BGP peer added", "peer", a, "asn", p.asn, "port", p.port,
			"graceful_restart_seconds", p.grTime)
	}
	return errors.Join(errs...)
}

// setPathsLocked advertises exactly routes with comms, withdrawing the rest. New communities are
// put on every path: adding a path for a prefix we already advertise replaces it.
func (s *Speaker) setPathsLocked(ctx context.Context, routes []netip.Addr, comms []community) error {
	var errs []error
	keep := map[netip.Addr]bool{}
	for _, a := range routes {
		keep[a] = true
	}
	for _, a := range slices.SortedFunc(maps.Keys(s.paths), netip.Addr.Compare) {
		if keep[a] {
			continue
		}
		if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{Uuid: s.paths[a]}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %s: %w", a, err))
			continue
		}
		delete(s.paths, a)
	}
	commsChanged := !slices.Equal(s.comms, comms)
	for _, a := range routes {
		if _, ok := s.paths[a]; ok && !commsChanged {
			continue
		}
		p, err := apiPath(a, comms)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		r, err := s.srv.AddPath(ctx, &api.AddPathRequest{Path: p})
		if err != nil {
			errs = append(errs, fmt.Errorf("advertise %s: %w", a, err))
			continue
		}
		s.paths[a] = r.GetUuid()
	}
	if len(errs) == 0 {
		// Kept only when every path carries them, so a failed re-advertisement is retried.
		s.comms = comms
	}
	s.routes.Set(float64(len(s.paths)))
	return errors.Join(errs...)
}

// Stop ends all peering. With graceful restart on, the sessions are dropped without a
// NOTIFICATION, so the peers keep this node's routes (stale) for graceful_restart_seconds and
// traffic keeps flowing while the agent restarts; without it they are told, and withdraw them
// at once. A later Set starts again.
func (s *Speaker) Stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopLocked(context.Background(), true)
}

// stopLocked stops GoBGP; graceful: preserve graceful restart where it was negotiated.
func (s *Speaker) stopLocked(ctx context.Context, graceful bool) error {
	if !s.running {
		return nil
	}
	var err error
	if graceful {
		silent := map[netip.AddrPort]bool{}
		for a, p := range s.peers {
			if p.grTime > 0 {
				silent[netip.AddrPortFrom(a, uint16(p.port))] = true
			}
		}
		if len(silent) > 0 {
			var n int
			n, err = dropSessions(silent)
			s.log.Info("BGP sessions dropped for graceful restart", "sessions", n)
		}
	}
	// StopBgp deletes the peers: a NOTIFICATION to those not dropped above, and a failed write
	// on the others.
	if e := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); e != nil {
		err = errors.Join(err, fmt.Errorf("stop BGP: %w", e))
	}
	s.running = false
	s.peers = map[netip.Addr]peer{}
	s.paths = map[netip.Addr][]byte{}
	s.comms = nil
	s.routes.Set(0)
	return err
}

// Peers reports each peer's address and session state (for /debug and metrics), sorted by
// address.
func (s *Speaker) Peers() []PeerStatus {
	s.mu.Lock()
	srv, running := s.srv, s.running
	s.mu.Unlock()
	if !running {
		return nil
	}
	var out []PeerStatus
	// Not under mu: a slow Set must not stall a metrics scrape. GoBGP serializes the two.
	_ = srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		out = append(out, peerStatus(p))
	})
	slices.SortFunc(out, func(a, b PeerStatus) int { return a.Address.Compare(b.Address) })
	return out
}
