package ipvs

import (
	"net"
	"net/netip"

	mobyipvs "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// ipvsHandle is what the backend asks of IPVS, in moby/ipvs's types (whose handle it once was):
// genlIPVS implements it on the kernel, and tests substitute an in-memory fake that counts
// operations. A handle's socket is not safe for concurrent use: every call on Dataplane.ipvs
// happens with Dataplane.mu held, and drift repair reads without it on a handle of its own
// (Dataplane.dumpIPVS; the fake, safe for concurrent use, serves as both).
type ipvsHandle interface {
	NewService(*mobyipvs.Service) error
	UpdateService(*mobyipvs.Service) error
	DelService(*mobyipvs.Service) error
	NewDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	UpdateDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	DelDestination(*mobyipvs.Service, *mobyipvs.Destination) error
	GetServices() ([]*mobyipvs.Service, error)
	GetDestinations(*mobyipvs.Service) ([]*mobyipvs.Destination, error)
	Close()
}

func family(a netip.Addr) uint16 {
	if a.Is6() {
		return unix.AF_INET6
	}
	return unix.AF_INET
}

func toService(k vsKey, s vsSpec) *mobyipvs.Service {
	return &mobyipvs.Service{
		Address:       net.IP(k.Addr.AsSlice()),
		Protocol:      k.Proto,
		Port:          k.Port,
		SchedName:     s.Sched,
		Flags:         s.Flags,
		Timeout:       s.Timeout,
		Netmask:       s.Netmask,
		AddressFamily: family(k.Addr),
	}
}

func toDestination(rs netip.AddrPort, weight int) *mobyipvs.Destination {
	return &mobyipvs.Destination{
		Address:       net.IP(rs.Addr().AsSlice()),
		Port:          rs.Port(),
		Weight:        weight,
		AddressFamily: family(rs.Addr()),
		// ConnectionFlags 0 is masquerading (NAT): replies come back through this node.
	}
}

// fromService reads a dumped virtual server; ok is false for fwmark services, which are never
// ours.
func fromService(s *mobyipvs.Service) (vsKey, vsSpec, bool) {
	if s.FWMark != 0 {
		return vsKey{}, vsSpec{}, false
	}
	a, ok := netip.AddrFromSlice(s.Address)
	if !ok {
		return vsKey{}, vsSpec{}, false
	}
	a = a.Unmap()
	if s.AddressFamily == unix.AF_INET6 && a.Is4() {
		a = netip.AddrFrom16(a.As16())
	}
	spec := vsSpec{Sched: s.SchedName, Flags: s.Flags & ipvsPersistent, Netmask: s.Netmask}
	if spec.Flags&ipvsPersistent != 0 {
		spec.Timeout = s.Timeout
	}
	return vsKey{Proto: s.Protocol, Addr: a, Port: s.Port}, spec, true
}

func fromDestination(d *mobyipvs.Destination) (netip.AddrPort, bool) {
	a, ok := netip.AddrFromSlice(d.Address)
	if !ok {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(a.Unmap(), d.Port), true
}

// sameSpec compares the settings the backend controls; the kernel adds flags of its own (hashed)
// and keeps a timeout only for persistent services.
func sameSpec(a, b vsSpec) bool {
	norm := func(s vsSpec) vsSpec {
		s.Flags &= ipvsPersistent
		if s.Flags == 0 {
			s.Timeout = 0
		}
		return s
	}
	return norm(a) == norm(b)
}
