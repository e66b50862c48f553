package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/ganglion-proxy/ganglion/controlplane/baremetal"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// etcdSource is the bare-metal source: the store, the admin service that writes to it, and the
// membership that registers agents' nodes and records their probe results.
type etcdSource struct {
	st  *store.Store
	src *baremetal.Source
	set baremetal.Settings
	mem *baremetal.Membership
}

// NodeLeases are the leases this replica holds for connected agents, for inspect.
func (e *etcdSource) NodeLeases() map[string]*v1.NodeLease { return e.mem.NodeLeases() }

// Hooks are the stream hooks of bare-metal mode.
func (e *etcdSource) Hooks() stream.Hooks { return e.mem.Hooks() }

// Collectors are the membership's metrics (node leases lost and unheld) and the store's.
func (e *etcdSource) Collectors() []prometheus.Collector {
	return append(e.mem.Collectors(), e.st.Collectors()...)
}

func (e *etcdSource) Run(ctx context.Context, hub *stream.Hub, synced func()) error {
	defer e.st.Close()
	return e.src.Run(ctx, hub, synced)
}

// Register adds the admin service to the brain's server; its diffs compute with the brain's options.
func (e *etcdSource) Register(s *grpc.Server, opts compute.Options) {
	v1.RegisterAdminServiceServer(s, &baremetal.Admin{Store: e.st, Settings: e.set, Compute: opts})
}

func init() {
	var cfg store.Config
	var endpoints, serviceCIDR, nodePorts string
	var leaseTTL, grace time.Duration
	var allowed prefixList
	sources["etcd"] = sourceDef{
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&cfg.DataDir, "etcd-data-dir", "/var/lib/ganglion/etcd", "with --source=etcd: the embedded etcd's data directory")
			// The brain talks to its embedded etcd in process; these ports refuse every client
			// (TLS with a client CA whose key no one holds), so the scheme only says TCP or unix.
			fs.StringVar(&cfg.ClientURL, "etcd-listen-client", "https://127.0.0.1:2479",
				"where the embedded etcd's client port listens; it admits no client (the brain uses etcd in process), http:// is served as https://")
			fs.StringVar(&cfg.PeerURL, "etcd-listen-peer", "https://127.0.0.1:2480",
				"where the embedded etcd's peer port listens; it admits no peer, http:// is served as https://")
			fs.StringVar(&endpoints, "etcd-endpoints", "", "comma-separated endpoints of an external etcd cluster (instead of the embedded one)")
			fs.StringVar(&cfg.CertFile, "etcd-cert", "", "client certificate for the external etcd")
			fs.StringVar(&cfg.KeyFile, "etcd-key", "", "client key for the external etcd")
			fs.StringVar(&cfg.CAFile, "etcd-ca", "", "CA bundle for the external etcd")
			fs.StringVar(&cfg.Prefix, "etcd-prefix", "/ganglion/", "the key prefix Ganglion owns")
			fs.Int64Var(&cfg.QuotaBytes, "etcd-quota-bytes", store.DefaultQuotaBytes,
				"the embedded etcd's space quota: applies are refused, naming it, before the store reaches it (an external cluster keeps its own --quota-backend-bytes)")
			fs.StringVar(&serviceCIDR, "service-cidr", "10.96.0.0/16", "where VIPs are allocated for services that give none")
			fs.StringVar(&nodePorts, "node-port-range", "30000-32767", "the node port range")
			fs.DurationVar(&leaseTTL, "node-lease-ttl", 10*time.Second, "how long a node stays registered after its agent's stream ends")
			fs.DurationVar(&grace, "node-grace", 5*time.Second, "how long after its lease expires a node's endpoints stay in use")
			fs.Var(&allowed, "allow-address-range", "a CIDR where services and backends may use addresses refused by default (loopback, unspecified, multicast, "+
				"link-local incl. 169.254.169.254, and for services nodes' own addresses); repeatable or comma-separated")
		},
		build: func(log *slog.Logger) (source, error) {
			set := baremetal.DefaultSettings()
			p, err := netip.ParsePrefix(serviceCIDR)
			if err != nil {
				return nil, fmt.Errorf("--service-cidr: %w", err)
			}
			set.ServiceCIDR = p
			set.AllowedAddressRanges = allowed
			if _, err := fmt.Sscanf(nodePorts, "%d-%d", &set.NodePortMin, &set.NodePortMax); err != nil || set.NodePortMin > set.NodePortMax {
				return nil, fmt.Errorf("--node-port-range: %q is not min-max", nodePorts)
			}
			if endpoints != "" {
				cfg.Endpoints = strings.Split(endpoints, ",")
			}
			cfg.Log = log
			st, err := store.Open(context.Background(), cfg)
			if err != nil {
				return nil, err
			}
			return &etcdSource{st: st, src: &baremetal.Source{Store: st, Log: log, Grace: grace}, set: set,
				mem: &baremetal.Membership{Store: st, LeaseTTL: leaseTTL, Log: log}}, nil
		},
	}
}

// prefixList is a repeatable, comma-separated CIDR flag.
type prefixList []netip.Prefix

func (l *prefixList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, p := range *l {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}

func (l *prefixList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		p, err := netip.ParsePrefix(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("not a CIDR: %w", err)
		}
		*l = append(*l, p.Masked())
	}
	return nil
}
