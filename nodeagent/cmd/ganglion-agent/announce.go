package main

import (
	"context"
	"flag"
	"log/slog"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ganglion-proxy/ganglion/nodeagent/announce"
	"github.com/ganglion-proxy/ganglion/nodeagent/announce/bgp"
	"github.com/ganglion-proxy/ganglion/nodeagent/announce/l2"
)

// announceFlags switch the node's announcements of service addresses: what it announces is the
// brain's decision (its --announce-config); these only say whether this node takes part, and on
// which interfaces it answers ARP/NDP.
type announceFlags struct {
	enabled    bool
	interfaces string
}

func (a *announceFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&a.enabled, "announce", true, "answer ARP/NDP and peer over BGP for service addresses as the brain says (with a kernel dataplane); false ignores its announcements")
	fs.StringVar(&a.interfaces, "announce-interfaces", "", "comma-separated interfaces ARP/NDP is answered on (default: for each address, the interface whose subnet holds it, else the default route's)")
}

// startAnnouncer starts the speakers; nil when the node does not announce. stop ends BGP
// gracefully: with graceful restart the peers keep this node's routes while it restarts.
func startAnnouncer(ctx context.Context, f *flags, addrs []netip.Addr, reg prometheus.Registerer, log *slog.Logger) (a *announce.Announcer, stop func(), err error) {
	if !f.announce.enabled || f.backend == "recording" {
		return nil, func() {}, nil
	}
	if f.backend == "ipvs" && !f.strictARP {
		log.Warn("announcing with --dataplane ipvs without --ipvs-strict-arp: every node's kernel answers ARP for the VIPs on its dummy device, not only an address's owner")
	}
	speaker, err := l2.New(l2.Config{Interfaces: splitList(f.announce.interfaces), Log: log.With("announce", "l2"), Registerer: reg})
	if err != nil {
		return nil, nil, err
	}
	peers := bgp.New(bgp.Config{NodeAddresses: addrs, Log: log.With("announce", "bgp"), Registerer: reg})
	a = &announce.Announcer{L2: speaker, BGP: peers, Log: log}
	go a.Run(ctx)
	return a, func() {
		if err := peers.Stop(); err != nil {
			log.Warn("BGP stop", "err", err)
		}
		if err := speaker.Close(); err != nil {
			log.Warn("ARP/NDP speaker close", "err", err)
		}
	}, nil
}
