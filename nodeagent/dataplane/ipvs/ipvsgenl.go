package ipvs

import (
	"errors"
	"fmt"
	"net"
	"syscall"

	mobyipvs "github.com/moby/ipvs"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// genlIPVS is ipvsHandle on a generic-netlink socket of its own. It stands in for moby/ipvs's
// handle, whose constructor runs `modprobe -va ip_vs`: the agent runs no program (resolving the
// IPVS family makes the kernel load ip_vs itself). moby/ipvs's types stay the vocabulary.
type genlIPVS struct {
	sock   *nlSocket
	family uint16
}

var _ ipvsHandle = (*genlIPVS)(nil)

// errNotOurs refuses an operation on a firewall-mark virtual server: the backend has none.
var errNotOurs = errors.New("ipvs: firewall-mark virtual servers are not ours")

func newGenlIPVS() (*genlIPVS, error) {
	fam, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return nil, fmt.Errorf("resolving the IPVS netlink family: %w", err)
	}
	s, err := openNLSocket(unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	return &genlIPVS{sock: s, family: fam.ID}, nil
}

// Close releases the socket.
func (g *genlIPVS) Close() { g.sock.close() }

func (g *genlIPVS) service(cmd uint8, s *mobyipvs.Service, full bool) error {
	k, spec, ok := fromService(s)
	if !ok {
		return errNotOurs
	}
	return g.sock.exchange([][]byte{ipvsMsg(g.family, cmd, unix.NLM_F_ACK, serviceAttr(k, spec, full))})[0]
}

func (g *genlIPVS) dest(cmd uint8, s *mobyipvs.Service, d *mobyipvs.Destination, full bool) error {
	k, _, ok := fromService(s)
	rs, rok := fromDestination(d)
	if !ok || !rok {
		return errNotOurs
	}
	msg := ipvsMsg(g.family, cmd, unix.NLM_F_ACK, serviceAttr(k, vsSpec{}, false), destAttr(rs, d.Weight, full))
	return g.sock.exchange([][]byte{msg})[0]
}

// NewService creates a virtual server.
func (g *genlIPVS) NewService(s *mobyipvs.Service) error {
	return g.service(ipvsCmdNewService, s, true)
}

// UpdateService rewrites a virtual server's settings.
func (g *genlIPVS) UpdateService(s *mobyipvs.Service) error {
	return g.service(ipvsCmdSetService, s, true)
}

// DelService deletes a virtual server with its real servers.
func (g *genlIPVS) DelService(s *mobyipvs.Service) error {
	return g.service(ipvsCmdDelService, s, false)
}

// NewDestination adds a masquerading real server.
func (g *genlIPVS) NewDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	return g.dest(ipvsCmdNewDest, s, d, true)
}

// UpdateDestination rewrites a real server's weight.
func (g *genlIPVS) UpdateDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	return g.dest(ipvsCmdSetDest, s, d, true)
}

// DelDestination deletes a real server.
func (g *genlIPVS) DelDestination(s *mobyipvs.Service, d *mobyipvs.Destination) error {
	return g.dest(ipvsCmdDelDest, s, d, false)
}

// GetServices dumps every virtual server, firewall-mark ones included.
func (g *genlIPVS) GetServices() ([]*mobyipvs.Service, error) {
	replies, err := g.sock.dump(ipvsMsg(g.family, ipvsCmdGetService, unix.NLM_F_DUMP))
	if err != nil {
		return nil, fmt.Errorf("dumping virtual servers: %w", err)
	}
	var out []*mobyipvs.Service
	for _, r := range replies {
		if s, ok := decodeService(r); ok {
			out = append(out, &mobyipvs.Service{
				Address: net.IP(s.Key.Addr.AsSlice()), Protocol: s.Key.Proto, Port: s.Key.Port, FWMark: s.FWMark,
				SchedName: s.Spec.Sched, Flags: s.Spec.Flags, Timeout: s.Spec.Timeout, Netmask: s.Spec.Netmask, AddressFamily: s.AF,
			})
		}
	}
	return out, nil
}

// GetDestinations dumps the real servers of one virtual server.
func (g *genlIPVS) GetDestinations(s *mobyipvs.Service) ([]*mobyipvs.Destination, error) {
	k, _, ok := fromService(s)
	if !ok {
		return nil, errNotOurs
	}
	replies, err := g.sock.dump(ipvsMsg(g.family, ipvsCmdGetDest, unix.NLM_F_DUMP, serviceAttr(k, vsSpec{}, false)))
	if err != nil {
		return nil, fmt.Errorf("dumping real servers of %s: %w", k, err)
	}
	var out []*mobyipvs.Destination
	for _, r := range replies {
		if d, ok := decodeDest(r, family(k.Addr)); ok {
			out = append(out, &mobyipvs.Destination{
				Address: net.IP(d.Real.Addr().AsSlice()), Port: d.Real.Port(), Weight: d.Weight, ConnectionFlags: d.Fwd,
				AddressFamily: family(d.Real.Addr()), ActiveConnections: d.Active, InactiveConnections: d.Inactive,
			})
		}
	}
	return out, nil
}

// errMalformedReply means the kernel's answer could not be read.
var errMalformedReply = errors.New("netlink: malformed reply")

// errDumpInterrupted means the kernel's table changed during a dump: its result is not a view.
var errDumpInterrupted = errors.New("netlink dump interrupted")

// dump sends one dump request and returns each reply's payload after its generic-netlink
// header, copied out of the receive buffer.
func (s *nlSocket) dump(req []byte) ([][]byte, error) {
	s.seq++
	nl.NativeEndian().PutUint32(req[8:12], s.seq)
	if err := unix.Sendto(s.fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("netlink send: %w", err)
	}
	var out [][]byte
	for {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(s.buf[:n])
		if err != nil {
			return nil, fmt.Errorf("netlink reply: %w", err)
		}
		part, done, err := dumpPart(msgs, s.seq)
		out = append(out, part...)
		if done || err != nil {
			return out, err
		}
	}
}

// dumpPart reads one received buffer of a dump numbered seq: the payloads it holds, and whether
// the dump ended (NLMSG_DONE, or an error).
func dumpPart(msgs []syscall.NetlinkMessage, seq uint32) ([][]byte, bool, error) {
	var out [][]byte
	for _, m := range msgs {
		if m.Header.Seq != seq {
			continue
		}
		if m.Header.Flags&unix.NLM_F_DUMP_INTR != 0 {
			return nil, true, errDumpInterrupted
		}
		switch m.Header.Type {
		case unix.NLMSG_ERROR, unix.NLMSG_DONE:
			// Both end the dump; both carry an error code (DONE's says whether the dump failed).
			if m.Header.Type == unix.NLMSG_ERROR && len(m.Data) < 4 {
				return nil, true, errMalformedReply
			}
			if code := int32(u32(m.Data)); code != 0 {
				return nil, true, unix.Errno(-code)
			}
			return out, true, nil
		}
		if len(m.Data) > 4 {
			out = append(out, append([]byte(nil), m.Data[4:]...))
		}
	}
	return out, false, nil
}
