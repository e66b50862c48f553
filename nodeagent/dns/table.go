package dns

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Table is the node's DNS zone. Writers (the dataplane gate, the stream's records) are serialized
// and rebuild only the services they change; readers load the zone with one atomic pointer read
// and never wait.
type Table struct {
	ttl uint32

	mu      sync.Mutex                 // serializes writers; guards the inputs below
	ports   map[string]*v1.ServicePort // by base, only those the kernel serves
	bases   map[string]map[string]bool // service key -> its bases in ports
	records map[string]*v1.DNSRecords  // service key -> the brain's records
	serial  uint32
	// complete is set once the agent's state is complete (its first prune).
	complete bool
	cur      atomic.Pointer[zone]
}

// NewTable returns an empty zone for domain (such as "cluster.local") whose records carry ttl.
func NewTable(domain string, ttl uint32) *Table {
	t := &Table{ttl: ttl, ports: map[string]*v1.ServicePort{}, bases: map[string]map[string]bool{},
		records: map[string]*v1.DNSRecords{}}
	t.cur.Store(emptyZone(domain, ttl))
	return t
}

// zone returns the current zone.
func (t *Table) zone() *zone { return t.cur.Load() }

// SetRecords replaces the brain's records (headless and ExternalName services). Records of an
// unchanged service are the same message as before, so only changed services are rebuilt.
func (t *Table) SetRecords(records []*v1.DNSRecords) {
	t.mu.Lock()
	defer t.mu.Unlock()
	next := make(map[string]*v1.DNSRecords, len(records))
	for _, r := range records {
		if validLabel(r.Namespace) && validLabel(r.Name) {
			next[serviceKey(r.Namespace, r.Name)] = r
		}
	}
	changed := map[string]bool{}
	for k, r := range t.records {
		if next[k] != r {
			changed[k] = true
		}
	}
	for k, r := range next {
		if t.records[k] != r {
			changed[k] = true
		}
	}
	t.records = next
	t.publish(changed, false)
}

// port returns the port of a base as the zone has it.
func (t *Table) port(base string) *v1.ServicePort {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ports[base]
}

// updatePorts sets (non-nil) or removes (nil) ports by base, in one swap.
func (t *Table) updatePorts(ports map[string]*v1.ServicePort) {
	if len(ports) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := map[string]bool{}
	for base, p := range ports {
		t.setPort(base, p, changed)
	}
	t.publish(changed, false)
}

// keepPorts removes every port whose base keep does not hold. The agent prunes once its state
// is complete, so from then on the zone is complete too: until then it answers nothing in the
// domain as certain (see zone.complete).
func (t *Table) keepPorts(keep map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	changed := map[string]bool{}
	for base := range t.ports {
		if !keep[base] {
			t.setPort(base, nil, changed)
		}
	}
	if !t.complete {
		t.complete = true
		t.publish(changed, true)
		return
	}
	t.publish(changed, false)
}

// setPort sets or removes (p nil) one base and marks its service changed; the caller holds mu.
func (t *Table) setPort(base string, p *v1.ServicePort, changed map[string]bool) {
	if old := t.ports[base]; old != nil {
		k := serviceKey(old.Namespace, old.Name)
		delete(t.bases[k], base)
		if len(t.bases[k]) == 0 {
			delete(t.bases, k)
		}
		delete(t.ports, base)
		changed[k] = true
	}
	if p == nil || !validLabel(p.Namespace) || !validLabel(p.Name) {
		return
	}
	k := serviceKey(p.Namespace, p.Name)
	if t.bases[k] == nil {
		t.bases[k] = map[string]bool{}
	}
	t.bases[k][base] = true
	t.ports[base] = p
	changed[k] = true
}

// publish swaps in a zone whose changed services are rebuilt from the inputs and whose others
// are shared with the current one; the caller holds mu. force publishes even with no change.
func (t *Table) publish(changed map[string]bool, force bool) {
	if len(changed) == 0 && !force {
		return
	}
	old := t.zone()
	t.serial++
	z := &zone{domain: old.domain, svcDomain: old.svcDomain, soa: soaRecord(old.domain, t.ttl, t.serial), complete: t.complete,
		services: maps.Clone(old.services), namespaces: maps.Clone(old.namespaces), reverse: maps.Clone(old.reverse)}
	for k := range changed {
		if f := z.services[k]; f != nil {
			z.remove(f)
		}
		var ports []*v1.ServicePort
		for _, b := range slices.Sorted(maps.Keys(t.bases[k])) {
			ports = append(ports, t.ports[b])
		}
		if f := buildFragment(z.domain, t.ttl, k, ports, t.records[k]); f != nil {
			z.add(f)
		}
	}
	t.cur.Store(z)
}

// remove takes a fragment out of a zone being built (whose maps are its own copies).
func (z *zone) remove(f *fragment) {
	delete(z.services, f.key)
	if z.namespaces[f.namespace]--; z.namespaces[f.namespace] <= 0 {
		delete(z.namespaces, f.namespace)
	}
	for _, rev := range f.reverse {
		// A new slice: the old zone's readers may still hold the old one.
		keys := slices.DeleteFunc(slices.Clone(z.reverse[rev]), func(k string) bool { return k == f.key })
		if len(keys) == 0 {
			delete(z.reverse, rev)
		} else {
			z.reverse[rev] = keys
		}
	}
}

// add puts a fragment into a zone being built.
func (z *zone) add(f *fragment) {
	z.services[f.key] = f
	z.namespaces[f.namespace]++
	for _, rev := range f.reverse {
		z.reverse[rev] = append(slices.Clip(z.reverse[rev]), f.key)
	}
}
