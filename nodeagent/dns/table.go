package dns

import (
	"maps"
	"slices"
	"sync"
	"sync/atomic"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Table is the node's DNS zone. Writers (the dataplane gate, the stream's records) are serialized
// and rebuild the zone whole; readers load it with one atomic pointer read and never wait.
type Table struct {
	domain string
	ttl    uint32

	mu      sync.Mutex // serializes writers; guards the inputs below
	ports   map[string]*v1.ServicePort
	records []*v1.DNSRecords
	serial  uint32
	cur     atomic.Pointer[zone]
}

// NewTable returns an empty zone for domain (such as "cluster.local") whose records carry ttl.
func NewTable(domain string, ttl uint32) *Table {
	t := &Table{domain: domain, ttl: ttl, ports: map[string]*v1.ServicePort{}}
	t.cur.Store(buildZone(domain, ttl, 0, nil, nil))
	return t
}

// zone returns the current zone.
func (t *Table) zone() *zone { return t.cur.Load() }

// Domain is the cluster domain as a lowercase FQDN.
func (t *Table) Domain() string { return t.zone().domain }

// SetRecords replaces the brain's records (headless and ExternalName services).
func (t *Table) SetRecords(records []*v1.DNSRecords) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.records = slices.Clone(records)
	t.rebuild()
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
	for base, p := range ports {
		if p == nil {
			delete(t.ports, base)
		} else {
			t.ports[base] = p
		}
	}
	t.rebuild()
}

// keepPorts removes every port whose base keep does not hold.
func (t *Table) keepPorts(keep map[string]bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(t.ports)
	maps.DeleteFunc(t.ports, func(b string, _ *v1.ServicePort) bool { return !keep[b] })
	if len(t.ports) != n {
		t.rebuild()
	}
}

// rebuild builds and swaps in the zone of the current inputs; the caller holds mu. Ports are
// taken in base order so that equal inputs give equal zones.
func (t *Table) rebuild() {
	ports := make([]*v1.ServicePort, 0, len(t.ports))
	for _, b := range slices.Sorted(maps.Keys(t.ports)) {
		ports = append(ports, t.ports[b])
	}
	t.serial++
	t.cur.Store(buildZone(t.domain, t.ttl, t.serial, ports, t.records))
}
