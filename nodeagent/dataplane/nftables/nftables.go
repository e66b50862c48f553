package nftables

import (
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftgen"
)

// TableName is the name of the table this backend owns in the ip and the ip6 family.
const TableName = "ganglion"

// Default packet mark bits. They are kube-proxy's masquerade bit and the next one, so the backend
// replaces kube-proxy without colliding with CNI plugins that already avoid those bits.
const (
	DefaultMasqueradeBit uint32 = 0x4000
	DefaultRejectBit     uint32 = 0x8000
)

// Dataplane programs ports into one nftables table per family. It keeps a view of what the
// kernel holds, so each Apply is one transaction of only the differences.
type Dataplane struct {
	mu     sync.Mutex
	opts   options
	k      kernel
	tables map[*family]*familyTable
	// lastMessages counts the netlink messages of the last transaction, for tests.
	lastMessages int
	// lastPlan is the last plan the kernel accepted, for /debug/plan.
	lastPlan *Plan

	// Drift repair (drift.go). waiting counts callers queued for mu: a pass holding it gives way.
	waiting atomic.Int32
	// epoch moves whenever the view is replaced by a dump: a read begun at another epoch is
	// stale. watch records our commits while a pass reads (watch.go). Under mu.
	epoch uint64
	watch *watch
	// unrepaired says the view was replaced by a dump whose repair has not been committed yet:
	// the view is then what the kernel holds, not what is wanted, and a dump equal to it is no
	// proof that nothing is to repair. Under mu.
	unrepaired bool
	// gens is the ruleset generation our last transaction or check left, and whether the tables
	// matched the view then (nobody else committed since we knew). Under mu.
	gens nftgen.Tracker
	// passMu makes drift-repair passes take turns; metrics counts them.
	passMu  sync.Mutex
	metrics *dataplane.ReconcileMetrics
}

var _ dataplane.Dataplane = (*Dataplane)(nil)

// families lists the families in the order a transaction handles them.
var families = []*family{familyV4, familyV6}

type options struct {
	netnsFD   int
	log       *slog.Logger
	masqBit   uint32
	rejectBit uint32
	fake      *Fake
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

// WithFake makes the backend program an in-memory kernel instead of nf_tables: for tests
// without root, and for showing what a node's rules would be.
func WithFake(f *Fake) Option { return func(o *options) { o.fake = f } }

// New opens the backend for node. If the tables exist (an earlier agent's), it reads them back and
// keeps them: nothing is flushed, established connections and affinity entries survive, and ports
// the new agent does not re-apply stay until Prune.
func New(node dataplane.Node, opts ...Option) (*Dataplane, error) {
	d := &Dataplane{opts: options{log: slog.Default(), masqBit: DefaultMasqueradeBit, rejectBit: DefaultRejectBit},
		tables: map[*family]*familyTable{}, metrics: dataplane.NewReconcileMetrics()}
	for _, o := range opts {
		o(&d.opts)
	}
	if d.opts.fake != nil {
		d.k = d.opts.fake
	} else {
		k, err := openNetlink(d.opts.netnsFD)
		if err != nil {
			return nil, err
		}
		d.k = k
	}
	for _, f := range families {
		t, err := newFamilyTable(f, node, d.opts)
		if err != nil {
			d.Close()
			return nil, err
		}
		d.tables[f] = t
	}
	if err := d.resync(); err != nil {
		d.Close()
		return nil, fmt.Errorf("nftables: start: %w", err)
	}
	return d, nil
}

func newFamilyTable(f *family, node dataplane.Node, o options) (*familyTable, error) {
	var cidrs []netip.Prefix
	for _, p := range node.PodCIDRs {
		if f.has(p.Addr()) {
			cidrs = append(cidrs, p)
		}
	}
	cfg := &renderConfig{podCIDRs: cidrs, masqBit: o.masqBit, rejectBit: o.rejectBit}
	skel, err := newSkeleton(f, cfg, node.NodePortAddrs(f.v6))
	if err != nil {
		return nil, err
	}
	t := &familyTable{f: f, table: &nftables.Table{Name: TableName, Family: f.table}, cfg: cfg,
		skel: skel, k: newKernelState(), ports: map[string]*portObjects{}, ipRefs: map[netip.Addr]int{},
		pairRefs: map[netip.Addr]int{}, ids: map[string]uint32{}, byID: map[uint32]string{}}
	cfg.setID = t.setID
	return t, nil
}

// Close releases the kernel handles and leaves the tables in place.
func (d *Dataplane) Close() error {
	if d.k == nil {
		return nil
	}
	return d.k.close()
}
