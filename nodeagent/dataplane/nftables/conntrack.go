package nftables

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// conntrackJob is one set of UDP flows to forget. UDP has no connection end, so a flow DNATed to
// a backend that left keeps going there until its conntrack entry times out, and a flow that met
// a port without endpoints keeps missing the endpoints that appear; kube-proxy deletes both.
type conntrackJob struct {
	v6 bool
	// to is the original destination (a frontend) when set.
	to netip.Addr
	// port is the original destination port.
	port uint16
	// backend, when set, limits the job to flows whose reply comes from this backend.
	backend netip.Addr
}

// conntrackJobs lists the flows a change from old to o makes stale; either may be nil.
func conntrackJobs(old, o *portObjects) []conntrackJob {
	cur := o
	if cur == nil {
		cur = old
	}
	if cur == nil || !cur.udp || (old != nil && old.restored && o != nil) {
		return nil
	}
	var jobs []conntrackJob
	frontends := func(p *portObjects, backend netip.Addr) {
		for _, fe := range p.frontends {
			jobs = append(jobs, conntrackJob{v6: p.fam.v6, to: fe.addr, port: fe.port, backend: backend})
		}
		for _, np := range p.nodePorts {
			jobs = append(jobs, conntrackJob{v6: p.fam.v6, port: np, backend: backend})
		}
	}
	switch {
	case o == nil: // removed: every flow to its frontends is stale
		frontends(old, netip.Addr{})
	case old == nil || !old.forwards:
		if o.forwards { // endpoints appeared: flows that were refused must start over
			frontends(o, netip.Addr{})
		}
	default:
		now := map[netip.Addr]bool{}
		for _, b := range o.backends {
			now[b.addr] = true
		}
		gone := map[netip.Addr]bool{}
		for _, b := range old.backends {
			if !now[b.addr] && !gone[b.addr] {
				gone[b.addr] = true
				frontends(old, b.addr)
			}
		}
	}
	return jobs
}

// runConntrack deletes the flows of jobs through h.
func runConntrack(h *netlink.Handle, jobs []conntrackJob) error {
	var v4, v6 []netlink.CustomConntrackFilter
	for _, j := range jobs {
		f := &netlink.ConntrackFilter{}
		if err := f.AddProtocol(unix.IPPROTO_UDP); err != nil {
			return fmt.Errorf("conntrack filter: %w", err)
		}
		if err := f.AddPort(netlink.ConntrackOrigDstPort, j.port); err != nil {
			return fmt.Errorf("conntrack filter: %w", err)
		}
		if j.to.IsValid() {
			if err := f.AddIP(netlink.ConntrackOrigDstIP, net.IP(j.to.AsSlice())); err != nil {
				return fmt.Errorf("conntrack filter: %w", err)
			}
		}
		if j.backend.IsValid() {
			if err := f.AddIP(netlink.ConntrackReplySrcIP, net.IP(j.backend.AsSlice())); err != nil {
				return fmt.Errorf("conntrack filter: %w", err)
			}
		}
		if j.v6 {
			v6 = append(v6, f)
		} else {
			v4 = append(v4, f)
		}
	}
	if len(v4) > 0 {
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, v4...); err != nil {
			return fmt.Errorf("delete IPv4 conntrack entries: %w", err)
		}
	}
	if len(v6) > 0 {
		if _, err := h.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET6, v6...); err != nil {
			return fmt.Errorf("delete IPv6 conntrack entries: %w", err)
		}
	}
	return nil
}
