package bgp

import (
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// connectRetrySeconds is how often GoBGP redials a peer that is down: short, because a node
// agent only makes outgoing sessions and a router that restarts should see it back quickly.
const connectRetrySeconds = 5

// deferralSeconds bounds the graceful restart deferral (see apiPeer). GoBGP takes 0 for its
// default, 360 s.
const deferralSeconds = 5

var (
	familyIPv4 = &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	familyIPv6 = &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
)

// apiGlobal is the server's global config. ListenPort -1 keeps GoBGP from listening on TCP 179:
// the speaker only dials out, and every listener is reachable by an attacker.
func apiGlobal(g global) *api.Global {
	return &api.Global{
		Asn:        g.asn,
		RouterId:   g.routerID.String(),
		ListenPort: -1,
	}
}

// apiPeer is p as GoBGP's neighbor. A session carries the family of its own addresses only
// (IPv4 routes over IPv4 sessions, IPv6 over IPv6): the next hop is then simply the session's
// local address, and no IPv6 next hop has to be chosen for an IPv4 session.
//
// restarting sets the Restart State bit and defers our updates until the peers' End-of-RIB
// (RFC 4724 §4.1); with it GoBGP also sets the Forwarding State bit, which is true for the node:
// its dataplane keeps forwarding while the agent restarts, so the peer keeps our stale routes
// instead of flushing them when the session comes back.
func apiPeer(p peer, restarting bool) *api.Peer {
	fam := familyIPv4
	if p.addr.Is6() {
		fam = familyIPv6
	}
	gr := p.grTime > 0
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.addr.String(),
			PeerAsn:         p.asn,
			AuthPassword:    p.password,
		},
		Transport: &api.Transport{RemotePort: p.port},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          uint64(p.holdTime),
			KeepaliveInterval: uint64(p.holdTime / 3),
			ConnectRetry:      connectRetrySeconds,
		}},
		AfiSafis: []*api.AfiSafi{{
			Config:            &api.AfiSafiConfig{Family: fam, Enabled: true},
			MpGracefulRestart: &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: gr}},
		}},
	}
	if gr {
		ap.GracefulRestart = &api.GracefulRestart{
			Enabled:     true,
			RestartTime: p.grTime,
			// How long a restarted speaker waits for the peers' End-of-RIB before sending its
			// routes (RFC 4724 §4.1). The node takes no routes from its peers, so waiting only
			// delays its own; it matters when a peer is down, which never sends one.
			DeferralTime:    min(p.grTime, deferralSeconds),
			LocalRestarting: restarting,
		}
	}
	return ap
}

// apiPath is the host route for a with next hop self ("0.0.0.0" or "::": GoBGP puts the session's
// local address there) and the communities.
func apiPath(a netip.Addr, comms []community) (*api.Path, error) {
	fam, bits, nh := familyIPv4, 32, "0.0.0.0"
	if a.Is6() {
		fam, bits, nh = familyIPv6, 128, "::"
	}
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: a.String(), PrefixLen: uint32(bits)})
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", a, err)
	}
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP: the node originates it
	if a.Is4() {
		attrs = append(attrs, &api.NextHopAttribute{NextHop: nh})
	} else {
		attrs = append(attrs, &api.MpReachNLRIAttribute{Family: fam, NextHops: []string{nh}, Nlris: []*anypb.Any{nlri}})
	}
	var std []uint32
	var large []*api.LargeCommunity
	for _, c := range comms {
		if c.large {
			large = append(large, &api.LargeCommunity{GlobalAdmin: c.global, LocalData1: c.local1, LocalData2: c.local2})
		} else {
			std = append(std, c.std)
		}
	}
	if len(std) > 0 {
		attrs = append(attrs, &api.CommunitiesAttribute{Communities: std})
	}
	if len(large) > 0 {
		attrs = append(attrs, &api.LargeCommunitiesAttribute{Communities: large})
	}
	pattrs := make([]*anypb.Any, 0, len(attrs))
	for _, m := range attrs {
		x, err := anypb.New(m)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", a, err)
		}
		pattrs = append(pattrs, x)
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: pattrs}, nil
}
