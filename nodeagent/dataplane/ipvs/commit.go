package ipvs

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// commit executes p: the nftables marks of every step in one transaction (step by step when it
// fails, so one bad port does not hold back the others), then each step's operations on existing
// objects, then the creations in bulk, then records the steps that fully succeeded. The view
// changes only from what the kernel confirmed. It returns the refusals and failures by base.
func (d *Dataplane) commit(p Plan) map[string]error {
	errs := map[string]error{}
	for base, err := range p.Refused {
		errs[base] = err
	}
	fail := func(base string, err error) { errs[base] = fmt.Errorf("ipvs dataplane: %s: %w", base, err) }
	for base, err := range d.commitNFT(p.Steps) {
		fail(base, err)
	}
	for _, s := range p.Steps {
		if errs[s.Base] != nil {
			continue
		}
		if err := d.runAll(s.Now); err != nil {
			fail(s.Base, err)
		}
	}
	for base, err := range d.commitBulk(p.Steps, errs) {
		fail(base, err)
	}
	for _, s := range p.Steps {
		if errs[s.Base] != nil {
			continue
		}
		switch {
		case s.Remove:
			d.forget(s.Base, d.opts.Node.PodCIDRs)
		case s.Want != nil:
			d.record(s.Base, s.Want, d.opts.Node.PodCIDRs)
		}
	}
	return errs
}

// commitNFT runs every step's nftables operations in one transaction, and step by step when that
// fails; it returns the steps that failed.
func (d *Dataplane) commitNFT(steps []portStep) map[string]error {
	var all []nftOp
	for _, s := range steps {
		all = append(all, s.NFT...)
	}
	if len(all) == 0 {
		return nil
	}
	if err := d.nftCommit(all); err == nil {
		d.sawNFT(all)
		return nil
	}
	failed := map[string]error{}
	for _, s := range steps {
		if len(s.NFT) == 0 {
			continue
		}
		if err := d.nftCommit(s.NFT); err != nil {
			failed[s.Base] = fmt.Errorf("nftables: %w", err)
			continue
		}
		d.sawNFT(s.NFT)
	}
	return failed
}

// sawNFT updates the view of the frontend elements from a committed transaction.
func (d *Dataplane) sawNFT(ops []nftOp) {
	for _, o := range ops {
		switch o.Kind {
		case nftAddFrontend:
			d.frontends[o.Key] = o.State
		case nftDelFrontend:
			delete(d.frontends, o.Key)
		case nftAddHairpin:
			d.hairpin[o.Addr] += 0
		case nftDelHairpin:
			delete(d.hairpin, o.Addr)
			delete(d.hairpinAdopted, o.Addr)
		}
	}
}

func (d *Dataplane) runAll(ops []ipvsOp) error {
	for _, o := range ops {
		if err := d.run(o); err != nil {
			return err
		}
	}
	return nil
}

// run executes one operation and records its effect in the view.
func (d *Dataplane) run(o ipvsOp) error {
	switch o.Kind {
	case opAddAddr:
		if err := d.dev.Add(o.Addr); err != nil {
			return err
		}
		d.addrs[o.Addr] += 0
		return nil
	case opDelAddr:
		if err := d.dev.Del(o.Addr); err != nil {
			return err
		}
		delete(d.addrs, o.Addr)
		return nil
	case opNewService, opEnsureService, opUpdateService, opDelService:
		return d.runService(o)
	}
	return d.runDest(o)
}

func (d *Dataplane) runService(o ipvsOp) error {
	switch o.Kind {
	case opNewService:
		if err := d.ipvs.NewService(toService(o.Key, o.Spec)); err != nil {
			return fmt.Errorf("creating %s: %w", o.Key, err)
		}
		d.kernel[o.Key] = &kernelVS{Spec: o.Spec, Reals: map[netip.AddrPort]int{}}
		return nil
	case opEnsureService:
		return d.ensureVS(o.Key, o.Want)
	case opUpdateService:
		kv, ok := d.kernel[o.Key]
		if !ok {
			return fmt.Errorf("updating %s: %w", o.Key, errNotInView)
		}
		if err := d.ipvs.UpdateService(toService(o.Key, o.Spec)); err != nil {
			return fmt.Errorf("updating %s: %w", o.Key, err)
		}
		kv.Spec = o.Spec
		return nil
	}
	return d.deleteVS(o.Key)
}

// errNotInView means a plan named a virtual server the view does not hold: a planning defect.
var errNotInView = errors.New("virtual server not in the kernel view")

func (d *Dataplane) runDest(o ipvsOp) error {
	kv, ok := d.kernel[o.Key]
	if !ok {
		return fmt.Errorf("real server %s of %s: %w", o.Real, o.Key, errNotInView)
	}
	svc := toService(o.Key, kv.Spec)
	switch o.Kind {
	case opNewDest:
		err := d.ipvs.NewDestination(svc, toDestination(o.Real, o.Weight))
		if errors.Is(err, unix.EEXIST) {
			err = d.ipvs.UpdateDestination(svc, toDestination(o.Real, o.Weight))
		}
		if err != nil {
			return fmt.Errorf("adding %s to %s: %w", o.Real, o.Key, err)
		}
	case opUpdateDest:
		if err := d.ipvs.UpdateDestination(svc, toDestination(o.Real, o.Weight)); err != nil {
			return fmt.Errorf("updating %s in %s: %w", o.Real, o.Key, err)
		}
	case opDrainDest:
		if kv.Reals[o.Real] != 0 {
			if err := d.ipvs.UpdateDestination(svc, toDestination(o.Real, 0)); err != nil {
				return fmt.Errorf("draining %s of %s: %w", o.Real, o.Key, err)
			}
			kv.Reals[o.Real] = 0
		}
		d.drain(o.Key, o.Real, d.now().Add(d.opts.DrainTimeout))
		return nil
	case opDelDest:
		err := d.ipvs.DelDestination(svc, toDestination(o.Real, 0))
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("deleting %s from %s: %w", o.Real, o.Key, err)
		}
		delete(kv.Reals, o.Real)
		d.undrain(o.Key, o.Real)
		return d.ct.DeleteUDP(o.Key, o.Real)
	default:
		return fmt.Errorf("ipvs operation kind %d unknown", o.Kind)
	}
	kv.Reals[o.Real] = o.Weight
	d.undrain(o.Key, o.Real)
	return nil
}

// ensureVS creates a virtual server or, when it exists already (the view was unknown, or it was
// created behind our back), adopts it: its settings are rewritten and its real servers read, one
// dump of one server, and brought to want.
func (d *Dataplane) ensureVS(k vsKey, want *vsPlan) error {
	svc := toService(k, want.Spec)
	kv := &kernelVS{Spec: want.Spec, Reals: map[netip.AddrPort]int{}}
	err := d.ipvs.NewService(svc)
	if errors.Is(err, unix.EEXIST) {
		if err := d.ipvs.UpdateService(svc); err != nil {
			return fmt.Errorf("updating %s: %w", k, err)
		}
		dests, err := d.ipvs.GetDestinations(svc)
		if err != nil {
			return fmt.Errorf("%w: listing real servers of %s: %w", ErrUnknownKernelState, k, err)
		}
		for _, dst := range dests {
			if rs, ok := fromDestination(dst); ok {
				kv.Reals[rs] = dst.Weight
			}
		}
	} else if err != nil {
		return fmt.Errorf("creating %s: %w", k, err)
	}
	d.kernel[k] = kv
	return d.runAll(planVS(k, kv, want, &d.view))
}

// deleteVS removes a virtual server with its real servers; its frontend element becomes loose.
func (d *Dataplane) deleteVS(k vsKey) error {
	kv, ok := d.kernel[k]
	if !ok {
		return nil
	}
	err := d.ipvs.DelService(toService(k, kv.Spec))
	if err != nil && !errors.Is(err, unix.ESRCH) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting %s: %w", k, err)
	}
	delete(d.kernel, k)
	delete(d.draining, k)
	d.loose.keys[k] = true
	if k.Proto == unix.IPPROTO_UDP {
		if err := d.ct.DeleteUDP(k, netip.AddrPort{}); err != nil {
			return err
		}
	}
	return nil
}

// bulkItem is a queued creation and the step it belongs to.
type bulkItem struct {
	base string
	op   ipvsOp
}

// commitBulk sends the creations of every step that has not failed, many per system call, and
// maps each result back to its step; it returns the steps that failed.
func (d *Dataplane) commitBulk(steps []portStep, errs map[string]error) map[string]error {
	w := d.writer()
	var q []bulkItem
	for _, s := range steps {
		if errs[s.Base] != nil {
			continue
		}
		for _, o := range s.Create {
			switch o.Kind {
			case opAddAddr:
				w.AddAddr(o.Addr)
			case opNewService:
				w.NewService(o.Key, o.Spec)
			case opNewDest:
				w.NewDestination(o.Key, o.Real, o.Weight)
			default:
				continue
			}
			q = append(q, bulkItem{base: s.Base, op: o})
		}
	}
	if len(q) == 0 {
		return nil
	}
	failed := map[string]error{}
	for i, err := range w.Flush() {
		if err := d.sawCreation(q[i].op, err); err != nil && failed[q[i].base] == nil {
			failed[q[i].base] = err
		}
	}
	return failed
}

// sawCreation records a creation the kernel confirmed, or recovers one that failed because its
// object turned out to exist (created behind our back since the last dump): it is adopted.
func (d *Dataplane) sawCreation(o ipvsOp, err error) error {
	switch o.Kind {
	case opAddAddr:
		if err != nil {
			return fmt.Errorf("adding %s to the device: %w", o.Addr, err)
		}
		d.addrs[o.Addr] += 0
	case opNewService:
		if errors.Is(err, unix.EEXIST) && o.Want != nil {
			return d.ensureVS(o.Key, o.Want)
		}
		if err != nil {
			return fmt.Errorf("creating %s: %w", o.Key, err)
		}
		d.kernel[o.Key] = &kernelVS{Spec: o.Spec, Reals: map[netip.AddrPort]int{}}
	case opNewDest:
		kv, ok := d.kernel[o.Key]
		if !ok {
			return nil // its virtual server failed and was reported
		}
		if errors.Is(err, unix.EEXIST) {
			err = d.ipvs.UpdateDestination(toService(o.Key, kv.Spec), toDestination(o.Real, o.Weight))
		}
		if err != nil {
			return fmt.Errorf("adding %s to %s: %w", o.Real, o.Key, err)
		}
		kv.Reals[o.Real] = o.Weight
	}
	return nil
}

// writer returns the bulk writer: raw netlink sockets when available, else one at a time.
func (d *Dataplane) writer() bulkWriter {
	if d.bulk != nil {
		return d.bulk
	}
	return &seqWriter{ipvs: d.ipvs, dev: d.dev}
}

// commitTidy executes a tidy plan: device addresses, then the nftables marks in one transaction.
// Loose ends it did not settle stay for the next one.
func (d *Dataplane) commitTidy(t tidyPlan) error {
	var errs []error
	for _, a := range t.DelAddrs {
		if err := d.run(ipvsOp{Kind: opDelAddr, Addr: a}); err != nil {
			errs = append(errs, err)
			delete(t.Settled.addrs, a)
		}
	}
	if len(t.NFT) > 0 {
		if err := d.nftCommit(t.NFT); err != nil {
			return errors.Join(append(errs, fmt.Errorf("nftables cleanup: %w", err))...)
		}
		d.sawNFT(t.NFT)
	}
	for k := range t.Settled.keys {
		delete(d.loose.keys, k)
	}
	for a := range t.Settled.addrs {
		delete(d.loose.addrs, a)
	}
	for a := range t.Settled.hairpins {
		delete(d.loose.hairpins, a)
	}
	return errors.Join(errs...)
}
