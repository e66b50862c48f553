package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"

	mdns "github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dns"
	"github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

// defaultDNSListen is NodeLocal DNSCache's link-local address: the agent puts it on its own dummy
// device, so it is the same on every node and needs no route.
const defaultDNSListen = "169.254.20.10:53"

// dnsFlags configure the node-local DNS server.
type dnsFlags struct {
	on                       optBool
	listen, domain, upstream string

	// From parse: the listen addresses, those of them to put on the device, the upstreams.
	addrs     []string
	local     []netip.Addr
	upstreams []string
}

func (d *dnsFlags) register(fs *flag.FlagSet) {
	fs.Var(&d.on, "dns", "serve node-local DNS for services (default: on in bare-metal mode with a kernel dataplane; off with --token-file, i.e. Kubernetes mode, and with --dataplane recording)")
	fs.StringVar(&d.listen, "dns-listen", defaultDNSListen, "comma-separated host:port the DNS server listens on (UDP and TCP); link-local addresses are put on the agent's dummy device "+dns.DeviceName)
	fs.StringVar(&d.domain, "dns-domain", "cluster.local", "the cluster domain: <service>.<namespace>.svc.<domain>")
	fs.StringVar(&d.upstream, "dns-upstream", "", "comma-separated resolvers (host or host:port) for other names (default: the nameservers of /etc/resolv.conf)")
}

// enabled says whether to serve DNS, and whether it was asked for explicitly.
func (d *dnsFlags) enabled(f *flags) (on, explicit bool) {
	if d.on.set {
		return d.on.val, true
	}
	return f.tls.tokenFile == "" && f.backend != "recording", false
}

// startDNS starts the DNS server when enabled and returns the dataplane wrapped so that the zone
// follows it, and the table for the stream's records (nil when DNS is off). A default-on server
// that cannot start is logged and left off, so that an agent on a node already running a
// node-local DNS cache still programs services; one asked for by flag fails the agent.
func startDNS(ctx context.Context, f *flags, dp dataplane.Dataplane, reg prometheus.Registerer, log *slog.Logger) (dataplane.Dataplane, *dns.Table, error) {
	on, explicit := f.dns.enabled(f)
	if !on {
		return dp, nil, nil
	}
	table, srv, err := f.dns.start(reg, log)
	if err != nil {
		if explicit {
			return nil, nil, err
		}
		log.Error("node-local DNS off: it could not start (--dns=false silences this)", "err", err)
		return dp, nil, nil
	}
	go srv.Serve(ctx)
	log.Info("node-local DNS serving", "listen", f.dns.listen, "domain", f.dns.domain, "upstreams", srv.Upstreams())
	return dns.NewGate(dp, table, f.dns.local), table, nil
}

// parse checks the flags whether DNS is on or not: a mistyped flag is an error at start, not a
// server silently off.
func (d *dnsFlags) parse() error {
	d.addrs = splitList(d.listen)
	for _, a := range d.addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			return fmt.Errorf("--dns-listen: %q: %w", a, err)
		}
		if ap.Addr().IsLinkLocalUnicast() {
			d.local = append(d.local, ap.Addr())
		}
	}
	if _, ok := mdns.IsDomainName(d.domain); !ok || d.domain == "" || d.domain == "." {
		return fmt.Errorf("--dns-domain: %q is not a domain name", d.domain)
	}
	var err error
	d.upstreams, err = d.upstreamList(d.addrs)
	return err
}

// start puts the link-local addresses on the device and binds the server.
func (d *dnsFlags) start(reg prometheus.Registerer, log *slog.Logger) (*dns.Table, *dns.Server, error) {
	if len(d.local) > 0 {
		dev, err := dns.EnsureAddrs(d.local)
		if err != nil {
			return nil, nil, fmt.Errorf("--dns-listen: %w", err)
		}
		log.Info("node-local DNS addresses", "device", dev, "addresses", d.local)
	}
	table := dns.NewTable(d.domain, dns.DefaultTTL)
	srv, err := dns.Listen(dns.Config{Listen: d.addrs, Upstreams: d.upstreams, Registerer: reg, Log: log}, table)
	if err != nil {
		return nil, nil, fmt.Errorf("--dns-listen: %w", err)
	}
	return table, srv, nil
}

// upstreamList returns --dns-upstream, or the nameservers of /etc/resolv.conf, with port 53 added
// where none is given, leaving out our own addresses: a node whose resolv.conf points at the
// agent would otherwise forward to itself for ever. What resolv.conf holds is the node's, not
// ours to refuse: entries that are no address are left out.
func (d *dnsFlags) upstreamList(listen []string) ([]string, error) {
	list, fromFlag := splitList(d.upstream), true
	if len(list) == 0 {
		if conf, err := mdns.ClientConfigFromFile("/etc/resolv.conf"); err == nil {
			list, fromFlag = conf.Servers, false
		}
	}
	var out []string
	for _, u := range list {
		if _, _, err := net.SplitHostPort(u); err != nil {
			u = net.JoinHostPort(strings.Trim(u, "[]"), "53")
		}
		if _, err := netip.ParseAddrPort(u); err != nil {
			if fromFlag {
				return nil, fmt.Errorf("--dns-upstream: %q is not an address: %w", u, err)
			}
			continue
		}
		if !sameAddrIn(listen, u) {
			out = append(out, u)
		}
	}
	return out, nil
}

// sameAddrIn reports whether addr (host:port) is one of list, however each is spelled.
func sameAddrIn(list []string, addr string) bool {
	a, _ := netip.ParseAddrPort(addr)
	for _, x := range list {
		if b, err := netip.ParseAddrPort(x); err == nil && b.Addr().Unmap() == a.Addr().Unmap() && b.Port() == a.Port() {
			return true
		}
	}
	return false
}

// capabilities are what the agent announces in its hello.
func capabilities(t *dns.Table) []string {
	if t == nil {
		return nil
	}
	return []string{resname.CapabilityDNS}
}

// dnsRecords is where the stream sends DNS records: nowhere when DNS is off (a nil *Table in the
// interface would not be nil).
func dnsRecords(t *dns.Table) stream.DNSRecords {
	if t == nil {
		return nil
	}
	return t
}

// optBool is a boolean flag that knows whether it was given.
type optBool struct{ set, val bool }

func (b *optBool) String() string {
	if b == nil || !b.set {
		return "auto"
	}
	return strconv.FormatBool(b.val)
}

func (b *optBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	b.set, b.val = true, v
	return nil
}

func (b *optBool) IsBoolFlag() bool { return true }
