package dns

import (
	"net/netip"
	"slices"
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

// zone is an immutable answer table: a new one is built for every change and swapped in whole, so
// readers never lock and never see half a change.
type zone struct {
	domain string // the cluster domain as a lowercase FQDN: "cluster.local."
	soa    *dns.SOA
	names  map[string]*rrset
	// exists holds every name that has records or children (an empty non-terminal such as
	// "default.svc.cluster.local."): a query for one is NODATA, not NXDOMAIN.
	exists map[string]bool
}

// zoneBuilder accumulates records, dropping duplicates (a port's v4 and v6 bases repeat its SRV).
type zoneBuilder struct {
	z    *zone
	ttl  uint32
	seen map[string]bool
}

// buildZone builds the zone of the ports the kernel serves and the brain's DNS records. Serial
// goes into the SOA, so a client can tell two zones apart.
func buildZone(domain string, ttl, serial uint32, ports []*v1.ServicePort, records []*v1.DNSRecords) *zone {
	domain = dns.CanonicalName(domain)
	b := &zoneBuilder{ttl: ttl, seen: map[string]bool{}, z: &zone{
		domain: domain,
		names:  map[string]*rrset{},
		exists: map[string]bool{domain: true},
		soa:    soaRecord(domain, ttl, serial),
	}}
	for _, p := range ports {
		b.addServicePort(p)
	}
	for _, r := range records {
		b.addRecords(r)
	}
	for _, set := range b.z.names {
		spreadWeights(set.srv)
	}
	return b.z
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

// serviceName is <name>.<namespace>.svc.<domain>.
func (b *zoneBuilder) serviceName(ns, name string) string {
	return strings.ToLower(name + "." + ns + ".svc." + b.z.domain)
}

// set returns the records of name, creating it and marking its parents as existing.
func (b *zoneBuilder) set(name string) *rrset {
	s := b.z.names[name]
	if s == nil {
		s = &rrset{}
		b.z.names[name] = s
		for n := name; dns.IsSubDomain(b.z.domain, n) && n != b.z.domain; {
			b.z.exists[n] = true
			n = n[strings.IndexByte(n, '.')+1:]
		}
	}
	return s
}

// add adds rr under its own name unless an identical record is already there.
func (b *zoneBuilder) add(rr dns.RR) {
	key := rr.String()
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

func (b *zoneBuilder) hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: b.ttl}
}

// address adds the A or AAAA record of addr at name.
func (b *zoneBuilder) address(name string, addr netip.Addr) {
	addr = addr.Unmap()
	if addr.Is4() {
		b.add(&dns.A{Hdr: b.hdr(name, dns.TypeA), A: addr.AsSlice()})
	} else {
		b.add(&dns.AAAA{Hdr: b.hdr(name, dns.TypeAAAA), AAAA: addr.AsSlice()})
	}
}

// pointer adds the PTR record of addr naming target.
func (b *zoneBuilder) pointer(addr netip.Addr, target string) {
	rev, err := dns.ReverseAddr(addr.Unmap().String())
	if err != nil {
		return
	}
	b.add(&dns.PTR{Hdr: b.hdr(rev, dns.TypePTR), Ptr: target})
}

// service adds the SRV record of one port at the service's name and, for a named port, at
// _<port>._<proto>.<service>.
func (b *zoneBuilder) service(svc, portName string, proto v1.Protocol, port uint32, target string) {
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
func (b *zoneBuilder) addServicePort(p *v1.ServicePort) {
	if p == nil || !validLabel(p.Namespace) || !validLabel(p.Name) {
		return
	}
	name := b.serviceName(p.Namespace, p.Name)
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
func (b *zoneBuilder) addRecords(r *v1.DNSRecords) {
	if r == nil || !validLabel(r.Namespace) || !validLabel(r.Name) {
		return
	}
	name := b.serviceName(r.Namespace, r.Name)
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
	slices.SortStableFunc(srv, func(a, b dns.RR) int { return strings.Compare(a.String(), b.String()) })
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
