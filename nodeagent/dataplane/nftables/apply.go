package nftables

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// Apply programs a change as one netlink transaction holding only the differences. If the kernel
// refuses it, each port is retried in its own transaction, so one bad port fails alone.
func (d *Dataplane) Apply(ctx context.Context, c dataplane.Change) map[string]error {
	d.mu.Lock()
	defer d.mu.Unlock()
	errs := map[string]error{}
	type planned struct {
		t *familyTable
		o *portObjects
	}
	var ups []planned
	upserted := map[string]bool{}
	for _, p := range c.Upserts {
		t := d.tableFor(p)
		o, err := render(t.cfg, p)
		if err != nil {
			errs[p.Base] = fmt.Errorf("nftables: %w", err)
			continue
		}
		ups = append(ups, planned{t, o})
		upserted[p.Base] = true
	}
	var removals []string
	for _, b := range c.Removals {
		if !upserted[b] {
			removals = append(removals, b)
		}
	}
	txs := d.newTxns()
	for _, u := range ups {
		txs[u.t.f.v6].upsert(u.o)
	}
	for _, b := range removals {
		for _, tx := range txs {
			tx.remove(b)
		}
	}
	err := d.commit(txs[false], txs[true])
	if err == nil || ctx.Err() != nil {
		if err != nil {
			for _, u := range ups {
				errs[u.o.base] = err
			}
		}
		return nilIfEmpty(errs)
	}
	// Find the culprits: one transaction per port.
	for _, u := range ups {
		tx := newTxn(u.t)
		tx.upsert(u.o)
		if err := d.commit(tx); err != nil {
			errs[u.o.base] = err
		}
	}
	for _, b := range removals {
		txs := d.newTxns()
		txs[false].remove(b)
		txs[true].remove(b)
		if err := d.commit(txs[false], txs[true]); err != nil {
			errs[b] = err
		}
	}
	return nilIfEmpty(errs)
}

func nilIfEmpty(m map[string]error) map[string]error {
	if len(m) == 0 {
		return nil
	}
	return m
}

func (d *Dataplane) tableFor(p dataplane.Port) *familyTable {
	if p.Service != nil && familyOf(p.Service.Family).v6 {
		return d.tables[1]
	}
	return d.tables[0]
}

func (d *Dataplane) newTxns() map[bool]*txn {
	return map[bool]*txn{false: newTxn(d.tables[0]), true: newTxn(d.tables[1])}
}

// Prune removes ports keep does not hold, and shared elements no kept port references.
func (d *Dataplane) Prune(_ context.Context, keep map[string]bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	var txs []*txn
	for _, t := range d.tables {
		tx := newTxn(t)
		for _, base := range slices.Sorted(maps.Keys(t.ports)) {
			if !keep[base] {
				tx.remove(base)
			}
		}
		tx.gcClasses()
		for a := range t.k.clusterIPs {
			tx.ips[a] = true
		}
		for a := range t.k.hairpin {
			tx.pairs[a] = true
		}
		txs = append(txs, tx)
	}
	if err := d.commit(txs...); err != nil {
		return fmt.Errorf("nftables: prune: %w", err)
	}
	return nil
}

// Reconcile reads the tables back and repairs whatever differs from what was applied: chains or
// rules deleted or edited by hand, map elements removed or added, even a deleted table.
func (d *Dataplane) Reconcile(context.Context) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.resync(); err != nil {
		return fmt.Errorf("nftables: reconcile: %w", err)
	}
	return nil
}

// commit sends the planned transactions as one netlink batch. On failure it rolls the plans back.
func (d *Dataplane) commit(txs ...*txn) error {
	d.lastMessages = 0
	for _, tx := range txs {
		tx.finish()
	}
	if !slices.ContainsFunc(txs, func(tx *txn) bool { return !tx.empty() }) {
		return nil
	}
	rollback := func() {
		for i := len(txs) - 1; i >= 0; i-- {
			txs[i].rollback()
		}
	}
	msgs := 0
	for _, tx := range txs {
		if err := tx.emit(d.cc); err != nil {
			rollback()
			// The batch holds half a transaction and the connection keeps the error: start over.
			d.cc.CloseLasting()
			if rerr := d.open(); rerr != nil {
				return errors.Join(err, rerr)
			}
			return fmt.Errorf("build transaction: %w", err)
		}
		msgs += tx.messages
	}
	d.lastMessages = msgs
	// One acknowledgement of about a kilobyte of buffer per message (what nft itself allows).
	if err := setBuffers(d.sock, max(4<<20, (msgs+16)*1024)); err != nil {
		rollback()
		return err
	}
	if err := d.cc.Flush(); err != nil {
		rollback()
		if errors.Is(err, unix.ENOBUFS) {
			// Acknowledgements were lost: the kernel may have committed. Believe a dump instead.
			if rerr := d.resync(); rerr != nil {
				return errors.Join(err, rerr)
			}
		}
		return fmt.Errorf("nftables transaction: %w", err)
	}
	var jobs []conntrackJob
	for _, tx := range txs {
		tx.undo = nil
		jobs = append(jobs, tx.cleanups...)
	}
	if len(jobs) > 0 {
		if err := runConntrack(d.ct, jobs); err != nil {
			d.opts.log.Warn("nftables: UDP conntrack cleanup failed", "error", err)
		}
	}
	return nil
}
