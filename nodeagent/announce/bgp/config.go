package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// ErrInvalidConfig is wrapped by every rejection of a BGPConfig or a route list, so the agent can
// tell a brain's mistake (report it, keep the last good peering) from a failure of the speaker.
var ErrInvalidConfig = errors.New("invalid BGP config")

const (
	defaultPort     = 179
	defaultHoldTime = 90
	// maxRestartTime is the largest restart time the graceful restart capability can carry: the
	// field is 12 bits wide (RFC 4724 §3).
	maxRestartTime = 4095
)

// global is what GoBGP fixes at StartBgp: changing either restarts the server.
type global struct {
	asn      uint32
	routerID netip.Addr
}

// peer is one neighbor as applied to GoBGP, comparable so a Set can tell a changed peer from an
// unchanged one and touch only the former.
type peer struct {
	addr     netip.Addr
	asn      uint32
	port     uint32
	password string
	holdTime uint32
	// grTime is the graceful restart time advertised to this peer; 0: no GR capability. It is per
	// peer because GoBGP negotiates capabilities per session.
	grTime uint32
}

// community is one community attached to every advertised route.
type community struct {
	large bool
	// std is a standard community (asn<<16 | value).
	std uint32
	// global, local1, local2 are a large community's three parts (RFC 8092).
	global, local1, local2 uint32
}

// desired is a validated BGPConfig with defaults filled in.
type desired struct {
	global      global
	peers       map[netip.Addr]peer
	communities []community
	grTime      uint32
}

// parseConfig validates conf and fills in its defaults; errors name the offending field as the
// proto spells it, so the brain's operator can find it.
func parseConfig(conf *v1.BGPConfig, nodeAddrs []netip.Addr) (desired, error) {
	d := desired{peers: map[netip.Addr]peer{}, grTime: conf.GetGracefulRestartSeconds()}
	if conf.GetLocalAsn() == 0 {
		return d, invalid("local_asn: must not be 0")
	}
	if d.grTime > maxRestartTime {
		return d, invalid("graceful_restart_seconds: %d: above the maximum %d", d.grTime, maxRestartTime)
	}
	d.global.asn = conf.GetLocalAsn()
	id, err := routerID(conf.GetRouterId(), nodeAddrs)
	if err != nil {
		return d, err
	}
	d.global.routerID = id
	for i, p := range conf.GetPeers() {
		pp, err := parsePeer(i, p, d.grTime)
		if err != nil {
			return d, err
		}
		if _, dup := d.peers[pp.addr]; dup {
			return d, invalid("peers[%d].address: %q: listed twice", i, p.GetAddress())
		}
		d.peers[pp.addr] = pp
	}
	for i, c := range conf.GetCommunities() {
		cc, err := parseCommunity(c)
		if err != nil {
			return d, invalid("communities[%d]: %q: %s", i, c, err)
		}
		d.communities = append(d.communities, cc)
	}
	return d, nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
}

// routerID is the configured router ID or, when empty, the node's first IPv4 address: BGP
// identifiers are 32 bits, so an IPv6-only node needs one configured.
func routerID(s string, nodeAddrs []netip.Addr) (netip.Addr, error) {
	if s != "" {
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Unmap().Is4() {
			return netip.Addr{}, invalid("router_id: %q: not an IPv4 address", s)
		}
		return a.Unmap(), nil
	}
	for _, a := range nodeAddrs {
		if a.Unmap().Is4() {
			return a.Unmap(), nil
		}
	}
	return netip.Addr{}, invalid("router_id: empty and the node has no IPv4 address to use")
}

func parsePeer(i int, p *v1.BGPPeer, grTime uint32) (peer, error) {
	a, err := netip.ParseAddr(p.GetAddress())
	if err != nil {
		return peer{}, invalid("peers[%d].address: %q: not an IP address", i, p.GetAddress())
	}
	if a.Zone() != "" {
		// GoBGP would need the interface as the neighbor's name; nodes peer over routed addresses.
		return peer{}, invalid("peers[%d].address: %q: zoned (link-local) addresses are not supported", i, p.GetAddress())
	}
	pp := peer{addr: a.Unmap(), asn: p.GetAsn(), port: p.GetPort(), password: p.GetPassword(),
		holdTime: p.GetHoldTimeSeconds(), grTime: grTime}
	if pp.asn == 0 {
		return peer{}, invalid("peers[%d].asn: must not be 0", i)
	}
	if pp.port == 0 {
		pp.port = defaultPort
	}
	if pp.port > 65535 {
		return peer{}, invalid("peers[%d].port: %d: not a TCP port", i, pp.port)
	}
	if pp.holdTime == 0 {
		pp.holdTime = defaultHoldTime
	}
	// RFC 4271 §4.2: a hold time is 0 (no keepalives, which 0 here cannot ask for) or at least 3.
	if pp.holdTime < 3 || pp.holdTime > 65535 {
		return peer{}, invalid("peers[%d].hold_time_seconds: %d: must be 3 to 65535", i, pp.holdTime)
	}
	if len(pp.password) > 80 {
		// TCP_MD5SIG_MAXKEYLEN: the kernel refuses longer keys, and only when the session dials.
		return peer{}, invalid("peers[%d].password: longer than 80 bytes", i)
	}
	return pp, nil
}

// parseCommunity reads "a:b" (standard, 16-bit parts) or "a:b:c" (large, 32-bit parts).
func parseCommunity(s string) (community, error) {
	parts := strings.Split(s, ":")
	var bits int
	switch len(parts) {
	case 2:
		bits = 16
	case 3:
		bits = 32
	default:
		return community{}, errors.New(`want "a:b" (standard) or "a:b:c" (large)`)
	}
	n := make([]uint32, len(parts))
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, bits)
		if err != nil {
			return community{}, fmt.Errorf("part %d: not a %d-bit number", i+1, bits)
		}
		n[i] = uint32(v)
	}
	if len(n) == 2 {
		return community{std: n[0]<<16 | n[1]}, nil
	}
	return community{large: true, global: n[0], local1: n[1], local2: n[2]}, nil
}

// hostRoutes validates the addresses to advertise and returns them unmapped, sorted and without
// duplicates, so two Sets with the same set in another order compare equal.
func hostRoutes(routes []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(routes))
	for i, a := range routes {
		if !a.IsValid() {
			return nil, invalid("routes[%d]: not an IP address", i)
		}
		out = append(out, a.Unmap().WithZone(""))
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out), nil
}
