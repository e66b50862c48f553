package ipvs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftgen"
)

// Options configure a Dataplane; the zero value of each field picks the default.
type Options struct {
	// Node is the node the agent runs on.
	Node dataplane.Node
	// Device is the dummy link holding service addresses (default ganglion-ipvs0).
	Device string
	// Scheduler is used when a port names none (default rr).
	Scheduler string
	// MasqueradeMark is the packet-mark bit that asks for masquerade (default 0x4000, the bit
	// kube-proxy uses, which Ganglion replaces).
	MasqueradeMark uint32
	// DrainTimeout bounds how long a TCP real server that left keeps draining (default 5 min).
	DrainTimeout time.Duration
	// DrainInterval is how often draining real servers are checked (default 2 s).
	DrainInterval time.Duration
	// StrictARP sets arp_ignore=1 and arp_announce=2.
	StrictARP bool
	// SysctlRoot is where sysctls are written (default /proc/sys); tests point it elsewhere.
	SysctlRoot string
}

func (o *Options) defaults() {
	if o.Device == "" {
		o.Device = "ganglion-ipvs0"
	}
	if o.Scheduler == "" {
		o.Scheduler = "rr"
	}
	if o.MasqueradeMark == 0 {
		o.MasqueradeMark = 0x4000
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = 5 * time.Minute
	}
	if o.DrainInterval == 0 {
		o.DrainInterval = 2 * time.Second
	}
	if o.SysctlRoot == "" {
		o.SysctlRoot = "/proc/sys"
	}
}

// Dataplane programs ports into IPVS and nftables. One mutex serializes everything, the
// background drain loop included, because the netlink handles are not safe for concurrent use.
type Dataplane struct {
	mu   sync.Mutex
	opts Options
	ipvs ipvsHandle
	nft  nftKernel
	dev  addrDevice
	ct   flowCleaner
	now  func() time.Time
	// bulk sends creations in batches; nil in tests, where seqWriter stands in.
	bulk *nlWriter
	// view is what the kernel holds, as far as the kernel confirmed it.
	view
	// lastPlan is the last Apply's plan, for /debug/plan.
	lastPlan Plan

	// Drift repair (drift.go). dumpIPVS is a handle of its own for reading IPVS without mu;
	// waiting counts changes queued for mu, which a pass comparing under it gives way to.
	dumpIPVS ipvsHandle
	waiting  atomic.Int32
	// epoch moves whenever a change may have touched IPVS: a read begun at another epoch is
	// stale. Under mu.
	epoch uint64
	// gens says whether anyone but us committed to nftables since our table last matched the
	// view. Under mu.
	gens nftgen.Tracker
	// passMu makes drift-repair passes take turns; metrics counts them.
	passMu  sync.Mutex
	metrics *dataplane.ReconcileMetrics

	stop chan struct{}
	done chan struct{}
}

var _ dataplane.Dataplane = (*Dataplane)(nil)

// ErrUnknownKernelState means a dump failed, so the backend does not know what the kernel holds
// and refuses to delete anything on a guess.
var ErrUnknownKernelState = errors.New("ipvs: kernel state unknown")

// New opens the kernel handles, sets the sysctls, creates the dummy device and the nftables
// table, and adopts whatever an earlier run left: nothing is flushed, so traffic keeps flowing
// through a restart. It starts the drain loop; Close stops it.
func New(ctx context.Context, opts Options) (*Dataplane, error) {
	opts.defaults()
	h, err := newGenlIPVS()
	if err != nil {
		return nil, fmt.Errorf("ipvs handle: %w", err)
	}
	// Only the families we use: asking for all fails on kernels without xfrm.
	nh, err := netlink.NewHandle(unix.NETLINK_ROUTE, unix.NETLINK_NETFILTER)
	if err != nil {
		h.Close()
		return nil, fmt.Errorf("netlink handle: %w", err)
	}
	nft, err := newNFTNetlink()
	if err != nil {
		h.Close()
		nh.Close()
		return nil, err
	}
	d := newDataplane(opts, h, nft, &dummyDevice{name: opts.Device, h: nh}, netlinkConntrack{h: nh})
	kv := sysctls
	if opts.StrictARP {
		kv = mergeMaps(sysctls, strictARPSysctls)
	}
	if err := writeSysctls(opts.SysctlRoot, kv); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.start(ctx); err != nil {
		d.Close()
		return nil, err
	}
	dh, err := newGenlIPVS()
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("ipvs handle for drift repair: %w", err)
	}
	d.dumpIPVS = dh
	dev := d.dev.(*dummyDevice)
	if d.bulk, err = newNLWriter(func() int { return dev.link.Attrs().Index }); err != nil {
		d.Close()
		return nil, err
	}
	go d.drainLoop()
	return d, nil
}

func newDataplane(opts Options, h ipvsHandle, nft nftKernel, dev addrDevice, ct flowCleaner) *Dataplane {
	opts.defaults()
	return &Dataplane{
		opts: opts, ipvs: h, nft: nft, dev: dev, ct: ct, now: time.Now, view: newView(),
		stop: make(chan struct{}), done: make(chan struct{}),
		dumpIPVS: h, metrics: dataplane.NewReconcileMetrics(), // fakes are safe for concurrent use
	}
}

// start creates our objects and adopts the kernel state of an earlier run.
func (d *Dataplane) start(ctx context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.dev.Ensure(); err != nil {
		return err
	}
	// A caller that lists every local address as the node's would, after a restart, include
	// the service addresses on our device and open NodePorts on them.
	onDev, err := d.dev.List()
	if err != nil {
		return err
	}
	d.opts.Node.Addresses = slices.DeleteFunc(slices.Clone(d.opts.Node.Addresses), func(a netip.Addr) bool {
		return slices.Contains(onDev, a.Unmap())
	})
	if err := d.nftCommit(d.baseOps()); err != nil {
		return fmt.Errorf("nftables base objects: %w", err)
	}
	return d.adopt()
}

// baseOps create the table's fixed objects and rewrite the fixed chains and the pod-cidrs sets,
// so that running them again (at start, on Reconcile) repairs them atomically.
func (d *Dataplane) baseOps() []nftOp {
	return []nftOp{{Kind: nftBase, Mark: d.opts.MasqueradeMark}, {Kind: nftPodCIDRs, PodCIDRs: d.opts.Node.PodCIDRs}}
}

// Close stops the drain loop and releases the handles; it leaves the rules in place.
func (d *Dataplane) Close() error {
	select {
	case <-d.stop:
		return nil
	default:
	}
	close(d.stop)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ipvs.Close()
	if d.dumpIPVS != d.ipvs && d.dumpIPVS != nil {
		d.dumpIPVS.Close()
	}
	if d.bulk != nil {
		d.bulk.close()
	}
	if dd, ok := d.dev.(*dummyDevice); ok {
		dd.h.Close()
	}
	if n, ok := d.nft.(*nftNetlink); ok {
		_ = n.close()
	}
	return nil
}

func mergeMaps(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
