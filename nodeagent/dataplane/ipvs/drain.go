package ipvs

import (
	"errors"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Graceful termination. A TCP (or SCTP) real server that leaves a virtual server gets weight 0:
// IPVS sends it no new connection but keeps forwarding the ones it has. The drain loop deletes it
// once IPVS counts no connection on it, or when DrainTimeout has passed. A UDP real server is
// deleted at once and its conntrack flows with it: UDP has no end of connection to wait for, and
// a client would otherwise keep sending into the old flow.

// removeReal takes rs out of k's rotation.
func (d *Dataplane) removeReal(k vsKey, kv *kernelVS, rs netip.AddrPort) error {
	svc := toService(k, kv.Spec)
	if k.Proto == unix.IPPROTO_UDP {
		err := d.ipvs.DelDestination(svc, toDestination(rs, 0))
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting %s from %s: %w", rs, k, err)
		}
		delete(kv.Reals, rs)
		d.undrain(k, rs)
		return d.ct.DeleteUDP(k, rs)
	}
	if d.isDraining(k, rs) {
		return nil
	}
	if kv.Reals[rs] != 0 {
		if err := d.ipvs.UpdateDestination(svc, toDestination(rs, 0)); err != nil {
			return fmt.Errorf("draining %s of %s: %w", rs, k, err)
		}
		kv.Reals[rs] = 0
	}
	d.drain(k, rs, d.now().Add(d.opts.DrainTimeout))
	return nil
}

// Draining returns how many real servers are draining, for tests and metrics.
func (d *Dataplane) Draining() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, m := range d.draining {
		n += len(m)
	}
	return n
}

func (d *Dataplane) drainLoop() {
	defer close(d.done)
	t := time.NewTicker(d.opts.DrainInterval)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		d.mu.Lock()
		select {
		case <-d.stop:
			d.mu.Unlock()
			return
		default:
		}
		_ = d.drainTick()
		d.mu.Unlock()
	}
}

// drainTick deletes draining real servers that have no connection left or ran out of time. It
// reads one virtual server's real servers per server with draining ones; a failed read leaves
// them draining (unknown is not "no connections").
func (d *Dataplane) drainTick() error {
	now := d.now()
	var errs []error
	for k, m := range d.draining {
		kv, ok := d.kernel[k]
		if !ok {
			delete(d.draining, k)
			continue
		}
		svc := toService(k, kv.Spec)
		dests, err := d.ipvs.GetDestinations(svc)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing real servers of %s: %w", k, err))
			continue
		}
		conns := map[netip.AddrPort]int{}
		for _, dst := range dests {
			if rs, ok := fromDestination(dst); ok {
				conns[rs] = dst.ActiveConnections + dst.InactiveConnections
			}
		}
		for rs, deadline := range m {
			n, present := conns[rs]
			if present && n > 0 && now.Before(deadline) {
				continue
			}
			if present {
				err := d.ipvs.DelDestination(svc, toDestination(rs, 0))
				if err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, fmt.Errorf("deleting drained %s of %s: %w", rs, k, err))
					continue
				}
			}
			delete(kv.Reals, rs)
			d.undrain(k, rs)
			d.epoch++ // a drift-repair read begun before may still list it
		}
	}
	return errors.Join(errs...)
}
