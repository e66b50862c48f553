// Package dns is the agent's node-local DNS server: it answers the cluster domain from the
// services this node's kernel serves and the brain's DNS records (headless and ExternalName
// services), and forwards every other name to the node's upstream resolvers through a small
// bounded cache.
//
// Consistency: the zone follows the dataplane, not the stream. Gate wraps the backend so that a
// ClusterIP is answered only once the kernel serves it and stops being answered before the kernel
// stops serving it. Records are built into an immutable zone swapped in whole: readers never lock.
//
// Answers are CoreDNS's kubernetes plugin's: A/AAAA for <svc>.<ns>.svc.<domain>, SRV for
// _<port>._<proto>.<svc>.<ns>.svc.<domain> and for the service name, PTR for ClusterIPs and
// headless endpoints, <host>.<svc>.<ns>.svc.<domain> per headless endpoint (its hostname, else its
// address with dashes), CNAME for ExternalName (chased upstream), NXDOMAIN with the SOA for
// unknown names in the domain. Zone transfers are refused and ANY gets RFC 8482's one HINFO.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/net/netutil"
)

// maxTCPConns bounds the TCP connections served at once per address.
const maxTCPConns = 512

// DefaultTTL is the TTL of the zone's records, CoreDNS's kubernetes plugin's: a VIP change is
// seen by clients within 5 s of the kernel serving it.
const DefaultTTL = 5

// Config configures a Server.
type Config struct {
	// Listen are host:port addresses to serve UDP and TCP on. A port 0 picks one port for both.
	Listen []string
	// Upstreams are the resolvers (host:port) for names outside the zone, tried in order.
	Upstreams []string
	// Exchanger reaches the upstreams; default NetExchanger.
	Exchanger Exchanger
	// MaxForwards bounds the forwarded questions in flight (default 256); CacheSize the
	// forwarded answers kept (default 10,000).
	MaxForwards, CacheSize int
	// Registerer, when set, gets the server's metrics.
	Registerer prometheus.Registerer
	Log        *slog.Logger
}

// Server serves a Table over UDP and TCP.
type Server struct {
	upstreams []string
	servers   []*dns.Server
	addrs     []net.Addr
	log       *slog.Logger
}

// Listen binds every address of cfg, UDP and TCP, and returns the server ready to Serve.
func Listen(cfg Config, t *Table) (*Server, error) {
	if cfg.Exchanger == nil {
		cfg.Exchanger = NetExchanger{}
	}
	if cfg.MaxForwards == 0 {
		cfg.MaxForwards = 256
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 10000
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	var fwd *Forwarder
	if len(cfg.Upstreams) > 0 {
		fwd = NewForwarder(cfg.Upstreams, cfg.Exchanger, cfg.MaxForwards, cfg.CacheSize)
	}
	var m *Metrics
	if cfg.Registerer != nil {
		m = NewMetrics(cfg.Registerer)
	}
	h := NewHandler(t, fwd, m)
	s := &Server{log: cfg.Log, upstreams: cfg.Upstreams}
	for _, addr := range cfg.Listen {
		if err := s.bind(addr, h); err != nil {
			s.close()
			return nil, err
		}
	}
	return s, nil
}

// bind listens on addr over UDP, then TCP on the same port.
func (s *Server) bind(addr string, h dns.Handler) error {
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		return fmt.Errorf("dns listen %s: %w", addr, err)
	}
	host, _, _ := net.SplitHostPort(addr)
	_, port, _ := net.SplitHostPort(pc.LocalAddr().String())
	ln, err := net.Listen("tcp", net.JoinHostPort(host, port))
	if err != nil {
		pc.Close()
		return fmt.Errorf("dns listen %s over TCP: %w", addr, err)
	}
	s.servers = append(s.servers,
		&dns.Server{PacketConn: pc, Handler: h, UDPSize: dns.DefaultMsgSize},
		// Each TCP connection holds a goroutine until it idles out: a client opening thousands
		// waits for a free one instead.
		&dns.Server{Listener: netutil.LimitListener(ln, maxTCPConns), Handler: h})
	s.addrs = append(s.addrs, pc.LocalAddr())
	return nil
}

// Upstreams returns the resolvers names outside the zone go to.
func (s *Server) Upstreams() []string { return s.upstreams }

// Addrs returns the bound UDP addresses (the TCP ones share their ports).
func (s *Server) Addrs() []net.Addr { return s.addrs }

// Serve answers until ctx ends, then closes the sockets.
func (s *Server) Serve(ctx context.Context) {
	for _, srv := range s.servers {
		go func() {
			if err := srv.ActivateAndServe(); err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				s.log.Error("dns server stopped", "err", err)
			}
		}()
	}
	<-ctx.Done()
	s.close()
}

func (s *Server) close() {
	for _, srv := range s.servers {
		if srv.PacketConn != nil {
			_ = srv.PacketConn.Close()
		}
		if srv.Listener != nil {
			_ = srv.Listener.Close()
		}
	}
}
