package dns

import (
	"cmp"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// rrset is every record of one name, by type. The records are built once per zone and shared by
// every answer: packing a message only reads them.
type rrset struct {
	a, aaaa, srv, ptr []dns.RR
	cname             dns.RR
}

// fragment is one service's records: built when one of its ports or its DNS records change,
// immutable after, and shared by every zone until then, so a change costs its own service only.
type fragment struct {
	key       string // <name>.<namespace>, lowercase
	namespace string
	fqdn      string // <name>.<namespace>.svc.<domain>
	names     map[string]*rrset
	// exists holds the names below fqdn that only have children (_tcp.<fqdn> under
	// _http._tcp.<fqdn>): a query for one is NODATA, not NXDOMAIN.
	exists map[string]bool
	// reverse are the reverse names of its PTR records, outside the domain.
	reverse []string
}

// fragmentBuilder accumulates records, dropping duplicates (a port's v4 and v6 bases repeat its
// SRV).
type fragmentBuilder struct {
	f    *fragment
	ttl  uint32
	seen map[string]bool
}

// serviceKey is a fragment's key: <name>.<namespace>, lowercase.
func serviceKey(namespace, name string) string { return strings.ToLower(name + "." + namespace) }

// buildFragment builds the records of one service from the ports of it the kernel serves and the
// brain's records of it (either may be empty); nil when it has none.
func buildFragment(domain string, ttl uint32, key string, ports []*v1.ServicePort, records *v1.DNSRecords) *fragment {
	name, namespace, _ := strings.Cut(key, ".")
	b := &fragmentBuilder{ttl: ttl, seen: map[string]bool{}, f: &fragment{
		key: key, namespace: namespace, fqdn: name + "." + namespace + ".svc." + domain,
		names: map[string]*rrset{}, exists: map[string]bool{},
	}}
	for _, p := range ports {
		b.addServicePort(p)
	}
	b.addRecords(records)
	if len(b.f.names) == 0 {
		return nil
	}
	for _, set := range b.f.names {
		spreadWeights(set.srv)
	}
	return b.f
}

// soaRecord is the zone's SOA, put in the authority section of negative answers as CoreDNS does,
// so resolvers cache a negative answer for at most ttl.
func soaRecord(domain string, ttl, serial uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: domain, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns:      "ns.dns." + domain,
		Mbox:    "hostmaster." + domain,
		Serial:  serial,
		Refresh: 7200, Retry: 1800, Expire: 86400, Minttl: ttl,
	}
}

// set returns the records of name, creating it and marking its parents below the service's
// name as existing.
func (b *fragmentBuilder) set(name string) *rrset {
	s := b.f.names[name]
	if s == nil {
		s = &rrset{}
		b.f.names[name] = s
		suffix := "." + b.f.fqdn
		for n := name; strings.HasSuffix(n, suffix) && !b.f.exists[n]; {
			b.f.exists[n] = true
			n = n[strings.IndexByte(n, '.')+1:]
		}
		if !strings.HasSuffix(name, b.f.fqdn) {
			b.f.reverse = append(b.f.reverse, name)
		}
	}
	return s
}

// add adds rr under its own name unless an identical record is already there. The duplicate key
// is its name, type and data: rr.String() would cost most of a rebuild.
func (b *fragmentBuilder) add(rr dns.RR) {
	var data string
	switch rr := rr.(type) {
	case *dns.A:
		data = rr.A.String()
	case *dns.AAAA:
		data = rr.AAAA.String()
	case *dns.SRV:
		data = strconv.Itoa(int(rr.Port)) + " " + rr.Target
	case *dns.PTR:
		data = rr.Ptr
	case *dns.CNAME:
		data = rr.Target
	}
	key := rr.Header().Name + " " + strconv.Itoa(int(rr.Header().Rrtype)) + " " + data
	if b.seen[key] {
		return
	}
	b.seen[key] = true
	s := b.set(rr.Header().Name)
	switch rr := rr.(type) {
	case *dns.A:
		s.a = append(s.a, rr)
	case *dns.AAAA:
		s.aaaa = append(s.aaaa, rr)
	case *dns.SRV:
		s.srv = append(s.srv, rr)
	case *dns.PTR:
		s.ptr = append(s.ptr, rr)
	case *dns.CNAME:
		s.cname = rr
	}
}

func (b *fragmentBuilder) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: b.ttl}
}

// address adds the A or AAAA record of addr at name.
func (b *fragmentBuilder) address(name string, addr netip.Addr) {
	addr = addr.Unmap()
	if addr.Is4() {
		b.add(&dns.A{Hdr: b.hdr(name, dns.TypeA), A: addr.AsSlice()})
	} else {
		b.add(&dns.AAAA{Hdr: b.hdr(name, dns.TypeAAAA), AAAA: addr.AsSlice()})
	}
}

// pointer adds the PTR record of addr naming target.
func (b *fragmentBuilder) pointer(addr netip.Addr, target string) {
	rev, err := dns.ReverseAddr(addr.Unmap().String())
	if err != nil {
		return
	}
	b.add(&dns.PTR{Hdr: b.hdr(rev, dns.TypePTR), Ptr: target})
}

// service adds the SRV record of one port at the service's name and, for a named port, at
// _<port>._<proto>.<service>.
func (b *fragmentBuilder) service(svc, portName string, proto v1.Protocol, port uint32, target string) {
	_, pname, ok := dataplane.IPProto(proto)
	if !ok || port == 0 || port > 65535 {
		return
	}
	names := []string{svc}
	if portName != "" {
		names = append(names, strings.ToLower("_"+portName+"._"+pname+"."+svc))
	}
	for _, n := range names {
		b.add(&dns.SRV{Hdr: b.hdr(n, dns.TypeSRV), Port: uint16(port), Target: target})
	}
}

// addServicePort adds what a proxied port answers: its ClusterIPs, their PTRs, its SRV.
func (b *fragmentBuilder) addServicePort(p *v1.ServicePort) {
	if p == nil {
		return
	}
	name := b.f.fqdn
	for _, fe := range p.Frontends {
		if fe.Kind != v1.FrontendKind_FRONTEND_KIND_CLUSTER_IP {
			continue
		}
		addr, err := netip.ParseAddr(fe.Address)
		if err != nil {
			continue
		}
		b.address(name, addr)
		b.pointer(addr, name)
		b.service(name, p.PortName, p.Protocol, fe.Port, name)
	}
}

// addRecords adds a headless service's endpoints or an ExternalName service's CNAME.
func (b *fragmentBuilder) addRecords(r *v1.DNSRecords) {
	if r == nil {
		return
	}
	name := b.f.fqdn
	if r.ExternalName != "" {
		target := dns.Fqdn(strings.ToLower(r.ExternalName))
		if validName(target) {
			b.add(&dns.CNAME{Hdr: b.hdr(name, dns.TypeCNAME), Target: target})
		}
		return
	}
	for _, ep := range r.Endpoints {
		addr, err := netip.ParseAddr(ep.Address)
		if err != nil {
			continue
		}
		host := endpointHost(ep.Hostname, addr) + "." + name
		b.address(name, addr)
		b.address(host, addr)
		b.pointer(addr, host)
		for _, port := range r.Ports {
			b.service(name, port.Name, port.Protocol, port.Port, host)
		}
	}
}

// endpointHost is the endpoint's own label: its hostname, else its address with dashes
// (10-244-1-10), as CoreDNS names endpoints of headless services.
func endpointHost(hostname string, addr netip.Addr) string {
	if h := strings.ToLower(hostname); validLabel(h) {
		return h
	}
	return strings.NewReplacer(".", "-", ":", "-").Replace(addr.Unmap().String())
}

// spreadWeights gives the SRV records of one name equal weights summing to about 100, as CoreDNS.
func spreadWeights(srv []dns.RR) {
	for _, rr := range srv {
		rr.(*dns.SRV).Weight = uint16(max(1, 100/len(srv)))
	}
	slices.SortFunc(srv, func(a, b dns.RR) int {
		x, y := a.(*dns.SRV), b.(*dns.SRV)
		return cmp.Or(strings.Compare(x.Target, y.Target), cmp.Compare(x.Port, y.Port))
	})
}

// validName reports whether every label of an FQDN is valid: miekg/dns accepts any bytes.
func validName(fqdn string) bool {
	if len(fqdn) > 254 || fqdn == "." {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(fqdn, "."), ".") {
		if !validLabel(l) {
			return false
		}
	}
	return true
}

// validLabel reports whether s can be one label of a name we answer.
func validLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
