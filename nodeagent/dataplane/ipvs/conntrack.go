package ipvs

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// flowCleaner deletes conntrack entries of a UDP flow through a virtual server to a real server
// that went away: UDP has no connection end, so without this a client keeps sending into the old
// entry until it times out.
type flowCleaner interface {
	// DeleteUDP deletes the flows to vs that rs serves, or every flow to vs when rs is zero.
	DeleteUDP(vs vsKey, rs netip.AddrPort) error
}

type netlinkConntrack struct{ h *netlink.Handle }

// DeleteUDP dumps the conntrack table and deletes the matching flows.
func (c netlinkConntrack) DeleteUDP(vs vsKey, rs netip.AddrPort) error {
	f := &netlink.ConntrackFilter{}
	fam := netlink.InetFamily(unix.AF_INET)
	if vs.Addr.Is6() {
		fam = unix.AF_INET6
	}
	// With net.ipv4.vs.conntrack=1 IPVS keeps the original tuple aimed at the virtual server and
	// rewrites the reply tuple to come from the real server.
	errs := []error{
		f.AddProtocol(unix.IPPROTO_UDP),
		f.AddIP(netlink.ConntrackOrigDstIP, net.IP(vs.Addr.AsSlice())),
		f.AddPort(netlink.ConntrackOrigDstPort, vs.Port),
	}
	if rs.IsValid() {
		errs = append(errs, f.AddIP(netlink.ConntrackReplySrcIP, net.IP(rs.Addr().AsSlice())))
	}
	for _, err := range errs {
		if err != nil {
			return fmt.Errorf("conntrack filter: %w", err)
		}
	}
	if _, err := c.h.ConntrackDeleteFilters(netlink.ConntrackTable, fam, f); err != nil {
		return fmt.Errorf("deleting conntrack entries of %s to %s: %w", vs, rs, err)
	}
	return nil
}
