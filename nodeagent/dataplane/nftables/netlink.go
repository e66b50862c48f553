package nftables

import (
	"errors"
	"fmt"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// elemChunk bounds the elements per netlink message: the element list is one attribute, whose
// length field has 16 bits.
const elemChunk = 256

// netlinkKernel is the real kernel: google/nftables on one lasting netlink socket for
// transactions, a conntrack handle, and sockets of their own for reading back (a google/nftables
// lasting connection for names, a plain netlink socket for dumps and the generation). Reading
// never shares a socket with transactions: drift repair reads without the apply lock, while a
// transaction may be under way or reopening its socket.
type netlinkKernel struct {
	netnsFD int
	cc      *nftables.Conn
	sock    *netlink.Conn // the lasting socket of cc, for sizing its buffers per transaction
	ct      *vnl.Handle
	// Reading back: opened once, safe for concurrent use (both lock per request).
	readCC *nftables.Conn
	dumpNL *netlink.Conn
	// genNL reads the ruleset generation, after every commit too: never behind a dump, which
	// holds dumpNL for seconds on a large table.
	genNL *netlink.Conn
}

// openNetlink opens the sockets in the namespace fd refers to (the caller's when 0).
func openNetlink(netnsFD int) (*netlinkKernel, error) {
	k := &netlinkKernel{netnsFD: netnsFD}
	if err := errors.Join(k.openReader(), k.open()); err != nil {
		k.close()
		return nil, err
	}
	return k, nil
}

// openReader opens the sockets that read tables back.
func (k *netlinkKernel) openReader() error {
	copts := []nftables.ConnOption{nftables.AsLasting()}
	if k.netnsFD > 0 {
		copts = append(copts, nftables.WithNetNSFd(k.netnsFD))
	}
	var err error
	if k.readCC, err = nftables.New(copts...); err != nil {
		return fmt.Errorf("nftables: netlink for reading: %w", err)
	}
	if k.dumpNL, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netnsFD}); err != nil {
		return fmt.Errorf("nftables: netlink for dumps: %w", err)
	}
	if err := k.dumpNL.SetReadBuffer(4 << 20); err != nil {
		return fmt.Errorf("nftables: dump buffer: %w", err)
	}
	if k.genNL, err = netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: k.netnsFD}); err != nil {
		return fmt.Errorf("nftables: netlink for the generation: %w", err)
	}
	return nil
}

// closeReader closes what openReader opened: at the end only, never while reading may run.
func (k *netlinkKernel) closeReader() error {
	var errs []error
	if k.readCC != nil {
		errs = append(errs, k.readCC.CloseLasting())
	}
	for _, c := range []*netlink.Conn{k.dumpNL, k.genNL} {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

// open opens the transaction socket and the conntrack handle; a failed transaction reopens them.
func (k *netlinkKernel) open() error {
	copts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		k.sock = c
		return setBuffers(c, 4<<20)
	})}
	if k.netnsFD > 0 {
		copts = append(copts, nftables.WithNetNSFd(k.netnsFD))
	}
	cc, err := nftables.New(copts...)
	if err != nil {
		return fmt.Errorf("nftables: netlink: %w", err)
	}
	k.cc = cc
	ns := netns.None()
	if k.netnsFD > 0 {
		ns = netns.NsHandle(k.netnsFD)
	} else if ns, err = netns.Get(); err != nil {
		return fmt.Errorf("nftables: current netns: %w", err)
	}
	if k.ct, err = vnl.NewHandleAt(ns, unix.NETLINK_NETFILTER); err != nil {
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

// close releases every socket and handle.
func (k *netlinkKernel) close() error { return errors.Join(k.closeWriter(), k.closeReader()) }

// closeWriter releases the transaction socket and the conntrack handle.
func (k *netlinkKernel) closeWriter() error {
	var err error
	if k.cc != nil {
		err = k.cc.CloseLasting()
	}
	if k.ct != nil {
		k.ct.Close()
	}
	return err
}

// commit writes the plan into the connection's batch and sends it as one transaction.
func (k *netlinkKernel) commit(p *Plan) error {
	for _, fp := range p.fams {
		if err := emit(k.cc, fp.t.table, fp.ops); err != nil {
			// The batch holds half a transaction and the connection keeps the error: start over.
			k.closeWriter()
			if rerr := k.open(); rerr != nil {
				return errors.Join(err, rerr)
			}
			return fmt.Errorf("build transaction: %w", err)
		}
	}
	// One acknowledgement of about a kilobyte of buffer per message (what nft itself allows).
	if err := setBuffers(k.sock, max(4<<20, (p.messages()+16)*1024)); err != nil {
		return err
	}
	if err := k.cc.Flush(); err != nil {
		return fmt.Errorf("nftables transaction: %w", err)
	}
	return nil
}

func (k *netlinkKernel) forget(jobs []conntrackJob) error { return runConntrack(k.ct, jobs) }

// emit writes ops into cc's batch, in order.
func emit(cc *nftables.Conn, t *nftables.Table, ops []op) error {
	for _, o := range ops {
		if err := emitOne(cc, t, o); err != nil {
			return err
		}
	}
	return nil
}

func emitOne(cc *nftables.Conn, t *nftables.Table, o op) error {
	ch := &nftables.Chain{Table: t, Name: o.name}
	switch o.kind {
	case opAddTable:
		cc.AddTable(t)
	case opAddChain:
		if c := o.chain; c != nil && c.hook != nil {
			ch.Type, ch.Hooknum, ch.Priority = c.typ, c.hook, c.priority
		}
		cc.AddChain(ch)
	case opFlushChain:
		cc.FlushChain(ch)
	case opDelChain:
		cc.DelChain(ch)
	case opAddSet:
		s := *o.set
		s.Table = t
		if err := cc.AddSet(&s, nil); err != nil {
			return fmt.Errorf("add set %s: %w", o.name, err)
		}
	case opDelSet:
		cc.DelSet(&nftables.Set{Table: t, Name: o.name})
	case opAddRule:
		return addRule(cc, ch, o.rule)
	case opAddElems, opDelElems:
		return emitElems(cc, &nftables.Set{Table: t, Name: o.name}, o.kind == opDelElems, o.elems)
	}
	return nil
}

// addRule appends a rule, creating its anonymous map first. The rule's comment is its hash.
func addRule(cc *nftables.Conn, ch *nftables.Chain, r rule) error {
	if r.anon != nil {
		s := &nftables.Set{Table: ch.Table, Anonymous: true, Constant: true, IsMap: true,
			KeyType: r.anon.keyType, DataType: r.anon.dataType}
		if err := cc.AddSet(s, r.anon.elems); err != nil {
			return fmt.Errorf("add anonymous map: %w", err)
		}
		r.anon.lookup.SetName, r.anon.lookup.SetID = s.Name, s.ID
	}
	cc.AddRule(&nftables.Rule{Table: ch.Table, Chain: ch, Exprs: r.exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment())})
	return nil
}

// emitElems adds or deletes elements of a named set, a chunk per message.
func emitElems(cc *nftables.Conn, s *nftables.Set, del bool, elems []nftables.SetElement) error {
	for c := range slices.Chunk(elems, elemChunk) {
		var err error
		if del {
			err = cc.SetDeleteElements(s, c)
		} else {
			err = cc.SetAddElements(s, c)
		}
		if err != nil {
			return fmt.Errorf("elements of %s: %w", s.Name, err)
		}
	}
	return nil
}
