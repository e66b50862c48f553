package bgp

import (
	"context"
	"net/netip"
	"strings"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/prometheus/client_golang/prometheus"
)

func peerStatus(p *api.Peer) PeerStatus {
	st := PeerStatus{ASN: p.GetConf().GetPeerAsn()}
	addr := p.GetState().GetNeighborAddress()
	if addr == "" {
		addr = p.GetConf().GetNeighborAddress()
	}
	st.Address, _ = netip.ParseAddr(addr)
	state := p.GetState().GetSessionState()
	st.State = strings.ToLower(state.String())
	st.Up = state == api.PeerState_ESTABLISHED
	return st
}

// watchPeers logs each peer's sessions going up and down: the events an operator looks for,
// which GoBGP itself only logs among its chatter. The watch lives as long as the server.
func (s *Speaker) watchPeers() {
	up := map[string]bool{}
	err := s.srv.WatchEvent(context.Background(), &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}},
		func(r *api.WatchEventResponse) {
			p := r.GetPeer().GetPeer()
			if p == nil {
				return
			}
			st := peerStatus(p)
			key := st.Address.String()
			if st.Up == up[key] {
				return
			}
			up[key] = st.Up
			if st.Up {
				s.log.Info("BGP session up", "peer", st.Address, "asn", st.ASN)
			} else {
				s.log.Info("BGP session down", "peer", st.Address, "asn", st.ASN, "state", st.State)
			}
		})
	if err != nil {
		s.log.Warn("cannot watch BGP peer state; session changes will not be logged", "err", err)
	}
}

// peerCollector exports each peer's session state at scrape time, from GoBGP itself, so the
// metric cannot drift from the sessions.
type peerCollector struct{ s *Speaker }

var peerUpDesc = prometheus.NewDesc("ganglion_announce_bgp_peer_up",
	"1 when the BGP session with the peer is established, else 0.", []string{"peer"}, nil)

var _ prometheus.Collector = (*peerCollector)(nil)

// Describe sends the metric's description.
func (c *peerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- peerUpDesc }

// Collect sends one gauge per configured peer.
func (c *peerCollector) Collect(ch chan<- prometheus.Metric) {
	for _, p := range c.s.Peers() {
		v := 0.0
		if p.Up {
			v = 1
		}
		ch <- prometheus.MustNewConstMetric(peerUpDesc, prometheus.GaugeValue, v, p.Address.String())
	}
}
