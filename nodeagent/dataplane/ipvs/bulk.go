package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Bulk creation. A full sync creates tens of thousands of virtual servers, real servers and
// addresses; one request and one wait per object is what makes it slow (moby/ipvs also
// allocates a 64 KiB buffer per reply). bulkWriter queues creations and sends them many per
// sendmsg, then collects one acknowledgement per request, so a failure still maps to its object.
// Incremental changes keep going through moby/ipvs one operation at a time.

// bulkWriter queues object creations; Flush runs them in order and returns one error (nil on
// success) per queued operation.
type bulkWriter interface {
	NewService(k vsKey, s vsSpec)
	NewDestination(k vsKey, rs netip.AddrPort, weight int)
	AddAddr(a netip.Addr)
	Flush() []error
}

// seqWriter is bulkWriter over the one-at-a-time interfaces, for tests and as a fallback.
type seqWriter struct {
	ipvs ipvsHandle
	dev  addrDevice
	ops  []func() error
}

// NewService queues a virtual server creation.
func (w *seqWriter) NewService(k vsKey, s vsSpec) {
	w.ops = append(w.ops, func() error { return w.ipvs.NewService(toService(k, s)) })
}

// NewDestination queues a real server creation.
func (w *seqWriter) NewDestination(k vsKey, rs netip.AddrPort, weight int) {
	w.ops = append(w.ops, func() error {
		return w.ipvs.NewDestination(toService(k, vsSpec{}), toDestination(rs, weight))
	})
}

// AddAddr queues a device address.
func (w *seqWriter) AddAddr(a netip.Addr) {
	w.ops = append(w.ops, func() error { return w.dev.Add(a) })
}

// Flush runs the queue one operation at a time.
func (w *seqWriter) Flush() []error {
	errs := make([]error, len(w.ops))
	for i, op := range w.ops {
		errs[i] = op()
	}
	w.ops = nil
	return errs
}

// nlWriter is bulkWriter on two raw netlink sockets of its own.
type nlWriter struct {
	genl, route *nlSocket
	family      uint16
	link        func() int
	msgs        []nlMsg
}

type nlMsg struct {
	route bool
	data  []byte
}

func newNLWriter(link func() int) (*nlWriter, error) {
	fam, err := netlink.GenlFamilyGet("IPVS")
	if err != nil {
		return nil, fmt.Errorf("resolving the IPVS netlink family: %w", err)
	}
	genl, err := openNLSocket(unix.NETLINK_GENERIC)
	if err != nil {
		return nil, err
	}
	route, err := openNLSocket(unix.NETLINK_ROUTE)
	if err != nil {
		genl.close()
		return nil, err
	}
	return &nlWriter{genl: genl, route: route, family: fam.ID, link: link}, nil
}

func (w *nlWriter) close() {
	w.genl.close()
	w.route.close()
}

// NewService queues IPVS_CMD_NEW_SERVICE.
func (w *nlWriter) NewService(k vsKey, s vsSpec) {
	w.msgs = append(w.msgs, nlMsg{data: serviceRequest(w.family, k, s)})
}

// NewDestination queues IPVS_CMD_NEW_DEST, masquerading.
func (w *nlWriter) NewDestination(k vsKey, rs netip.AddrPort, weight int) {
	w.msgs = append(w.msgs, nlMsg{data: destRequest(w.family, k, rs, weight)})
}

// AddAddr queues RTM_NEWADDR of a host address on our device, replacing an existing one.
func (w *nlWriter) AddAddr(a netip.Addr) {
	w.msgs = append(w.msgs, nlMsg{route: true, data: addrRequest(w.link(), a)})
}

// Flush sends the queue in chunks, each socket's messages in order.
func (w *nlWriter) Flush() []error {
	errs := make([]error, len(w.msgs))
	for _, route := range []bool{true, false} {
		s := w.genl
		if route {
			s = w.route
		}
		var idx []int
		var bufs [][]byte
		for i, m := range w.msgs {
			if m.route == route {
				idx = append(idx, i)
				bufs = append(bufs, m.data)
			}
		}
		for start := 0; start < len(bufs); start += bulkChunk {
			end := min(start+bulkChunk, len(bufs))
			for j, err := range s.exchange(bufs[start:end]) {
				errs[idx[start+j]] = err
			}
		}
	}
	w.msgs = nil
	return errs
}

// nlSocket is a raw netlink socket used for batched requests with acknowledgements.
type nlSocket struct {
	fd  int
	seq uint32
	buf []byte
}

func openNLSocket(proto int) (*nlSocket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// Room for a chunk of acknowledgements (an error ack carries the request back); FORCE
	// because the default limit is lower and the agent runs privileged anyway.
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 8<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	tv := unix.Timeval{Sec: 30}
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return &nlSocket{fd: fd, buf: make([]byte, 1<<20)}, nil
}

func (s *nlSocket) close() { unix.Close(s.fd) }

var errNoAck = errors.New("netlink: no acknowledgement")

// exchange sends msgs in one sendmsg and waits for every acknowledgement.
func (s *nlSocket) exchange(msgs [][]byte) []error {
	acks := newAckSet(s.seq+1, len(msgs))
	var out []byte
	for _, m := range msgs {
		s.seq++
		nl.NativeEndian().PutUint32(m[8:12], s.seq)
		out = append(out, m...)
	}
	if err := unix.Sendto(s.fd, out, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		acks.failRest(fmt.Errorf("netlink send: %w", err))
		return acks.errs
	}
	for acks.pending > 0 {
		n, _, err := unix.Recvfrom(s.fd, s.buf, 0)
		if err != nil {
			acks.failRest(fmt.Errorf("%w: %w", errNoAck, err))
			return acks.errs
		}
		acks.take(s.buf[:n])
	}
	return acks.errs
}

// ackSet collects the acknowledgements of n requests numbered from first: one result each, the
// first answer counting, whatever else arrives ignored.
type ackSet struct {
	first    uint32
	errs     []error
	answered []bool
	pending  int
}

func newAckSet(first uint32, n int) *ackSet {
	return &ackSet{first: first, errs: make([]error, n), answered: make([]bool, n), pending: n}
}

// take reads one received buffer. It is the one place kernel bytes are decoded, so it trusts
// nothing: a malformed buffer or message is skipped, never read past its end.
func (a *ackSet) take(buf []byte) {
	parsed, err := syscall.ParseNetlinkMessage(buf)
	if err != nil {
		return
	}
	for _, m := range parsed {
		if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
			continue
		}
		// Unsigned: a sequence number before first wraps past the end, and so does the counter.
		i := m.Header.Seq - a.first
		if i >= uint32(len(a.errs)) || a.answered[i] {
			continue
		}
		a.answered[i] = true
		if code := int32(nl.NativeEndian().Uint32(m.Data[0:4])); code != 0 {
			a.errs[i] = unix.Errno(-code)
		}
		a.pending--
	}
}

// failRest gives every unanswered request err.
func (a *ackSet) failRest(err error) {
	for i := range a.errs {
		if !a.answered[i] {
			a.errs[i] = err
		}
	}
}
