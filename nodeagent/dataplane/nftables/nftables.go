package nftables

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// TableName is the name of the table this backend owns in the ip and the ip6 family.
const TableName = "ganglion"

// Default packet mark bits. They are kube-proxy's masquerade bit and the next one, so the backend
// replaces kube-proxy without colliding with CNI plugins that already avoid those bits.
const (
	DefaultMasqueradeBit uint32 = 0x4000
	DefaultRejectBit     uint32 = 0x8000
)

// Dataplane programs ports into one nftables table per family. It keeps what it believes the
// kernel holds, so each Apply is one transaction of only the differences.
type Dataplane struct {
	mu     sync.Mutex
	opts   options
	cc     *nftables.Conn
	sock   *netlink.Conn // the lasting socket of cc, for sizing its buffers per transaction
	dumpNL *netlink.Conn
	ct     *vnl.Handle
	tables []*familyTable
	// lastMessages counts the netlink messages of the last transaction, for tests.
	lastMessages int
}

var _ dataplane.Dataplane = (*Dataplane)(nil)

type options struct {
	netnsFD   int
	log       *slog.Logger
	masqBit   uint32
	rejectBit uint32
}

// Option configures New.
type Option func(*options)

// WithNetNS makes the backend program the network namespace fd refers to instead of the caller's.
// The fd must stay open until Close.
func WithNetNS(fd int) Option { return func(o *options) { o.netnsFD = fd } }

// WithLogger sets where the backend reports what it cannot return (conntrack cleanup failures).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// WithMarks sets the packet mark bits for masquerade and reject.
func WithMarks(masquerade, reject uint32) Option {
	return func(o *options) { o.masqBit, o.rejectBit = masquerade, reject }
}

// New opens the backend for node. If the tables exist (an earlier agent's), it reads them back and
// keeps them: nothing is flushed, established connections and affinity entries survive, and ports
// the new agent does not re-apply stay until Prune.
func New(node dataplane.Node, opts ...Option) (*Dataplane, error) {
	d := &Dataplane{opts: options{log: slog.Default(), masqBit: DefaultMasqueradeBit, rejectBit: DefaultRejectBit}}
	for _, o := range opts {
		o(&d.opts)
	}
	if err := d.open(); err != nil {
		d.Close()
		return nil, err
	}
	for _, f := range []*family{familyV4, familyV6} {
		var cidrs []netip.Prefix
		for _, p := range node.PodCIDRs {
			if f.has(p.Addr()) {
				cidrs = append(cidrs, p)
			}
		}
		cfg := &renderConfig{podCIDRs: cidrs, masqBit: d.opts.masqBit, rejectBit: d.opts.rejectBit}
		skel, err := newSkeleton(f, cfg, node.NodePortAddrs(f.v6))
		if err != nil {
			d.Close()
			return nil, err
		}
		t := &familyTable{f: f, table: &nftables.Table{Name: TableName, Family: f.table}, cfg: cfg,
			skel: skel, ports: map[string]*portObjects{}, ipRefs: map[netip.Addr]int{}, pairRefs: map[netip.Addr]int{},
			ids: map[string]uint32{}, byID: map[uint32]string{}}
		cfg.setID = t.setID
		d.tables = append(d.tables, t)
	}
	if err := d.resync(); err != nil {
		d.Close()
		return nil, fmt.Errorf("nftables: start: %w", err)
	}
	return d, nil
}

func (d *Dataplane) open() error {
	copts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		d.sock = c
		return setBuffers(c, 4<<20)
	})}
	if d.opts.netnsFD > 0 {
		copts = append(copts, nftables.WithNetNSFd(d.opts.netnsFD))
	}
	cc, err := nftables.New(copts...)
	if err != nil {
		return fmt.Errorf("nftables: netlink: %w", err)
	}
	d.cc = cc
	if d.dumpNL, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: d.opts.netnsFD}); err != nil {
		return fmt.Errorf("nftables: netlink for dumps: %w", err)
	}
	if err := d.dumpNL.SetReadBuffer(4 << 20); err != nil {
		return fmt.Errorf("nftables: dump buffer: %w", err)
	}
	ns := netns.None()
	if d.opts.netnsFD > 0 {
		ns = netns.NsHandle(d.opts.netnsFD)
	} else if ns, err = netns.Get(); err != nil {
		return fmt.Errorf("nftables: current netns: %w", err)
	}
	if d.ct, err = vnl.NewHandleAt(ns, unix.NETLINK_NETFILTER); err != nil {
		return fmt.Errorf("nftables: conntrack handle: %w", err)
	}
	return nil
}

// setBuffers raises a netlink socket's buffers past the sysctl limits (we run as root): a
// transaction gets one acknowledgement per message, and a full sync has tens of thousands.
func setBuffers(c *netlink.Conn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("syscall conn: %w", err)
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = errors.Join(
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size),
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, size))
	}); err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("socket buffers: %w", serr)
	}
	return nil
}

// Close releases the netlink sockets and leaves the tables in place.
func (d *Dataplane) Close() error {
	var errs []error
	if d.cc != nil {
		errs = append(errs, d.cc.CloseLasting())
	}
	if d.dumpNL != nil {
		errs = append(errs, d.dumpNL.Close())
	}
	if d.ct != nil {
		d.ct.Close()
	}
	return errors.Join(errs...)
}
