package dns

import (
	"strings"

	"github.com/miekg/dns"
)

// result is the zone's answer to one question.
type result struct {
	rcode  int
	answer []dns.RR
	ns     []dns.RR // the SOA of a negative answer
	extra  []dns.RR // the addresses of SRV targets
	// chase is a CNAME's target outside the zone, for the caller to resolve.
	chase string
}

// zone is an immutable answer table: the services' fragments by key, and indexes over them. A
// change makes a new zone sharing every fragment it does not touch, swapped in whole, so readers
// never lock and never see half a change.
type zone struct {
	domain    string // the cluster domain as a lowercase FQDN: "cluster.local."
	svcDomain string // "svc." + domain
	soa       *dns.SOA
	services  map[string]*fragment // by <name>.<namespace>
	// namespaces counts the services of each namespace: <ns>.svc.<domain> exists while it has one.
	namespaces map[string]int
	// reverse lists, by reverse name, the services holding a PTR record there.
	reverse map[string][]string
	// complete is false until the agent's state is complete: a restarted agent must not say
	// NXDOMAIN, which clients cache, for a service it has not heard of yet.
	complete bool
}

func emptyZone(domain string, ttl uint32) *zone {
	domain = dns.CanonicalName(domain)
	return &zone{domain: domain, svcDomain: "svc." + domain, soa: soaRecord(domain, ttl, 0),
		services: map[string]*fragment{}, namespaces: map[string]int{}, reverse: map[string][]string{}}
}

// owns reports whether the zone answers name (lowercase FQDN) itself: names inside the cluster
// domain, and the reverse names of the addresses it holds. Every other name is forwarded.
func (z *zone) owns(name string) bool {
	return name == z.domain || strings.HasSuffix(name, "."+z.domain) || z.reverse[name] != nil
}

// find returns a name's records, and whether the name exists (with records or children).
func (z *zone) find(name string) (*rrset, bool) {
	if keys := z.reverse[name]; keys != nil {
		set := &rrset{}
		for _, k := range keys {
			set.ptr = append(set.ptr, z.services[k].names[name].ptr...)
		}
		return set, true
	}
	if name == z.domain || name == z.svcDomain {
		return nil, true
	}
	rest, ok := strings.CutSuffix(name, "."+z.svcDomain)
	if !ok {
		return nil, false
	}
	// rest is [<labels>.]<service>.<namespace>: the last two labels name the fragment.
	i := strings.LastIndexByte(rest, '.')
	if i < 0 {
		return nil, z.namespaces[rest] > 0
	}
	j := strings.LastIndexByte(rest[:i], '.')
	f := z.services[rest[j+1:]]
	if f == nil {
		return nil, false
	}
	set := f.names[name]
	return set, set != nil || f.exists[name]
}

// lookup answers a question for a name the zone owns, following CNAMEs inside the zone.
func (z *zone) lookup(name string, qtype uint16) result {
	var r result
	if name == z.domain && qtype == dns.TypeSOA {
		r.answer = []dns.RR{z.soa}
		return r
	}
	for hops := 0; hops < 8; hops++ {
		set, exists := z.find(name)
		if set == nil {
			if !exists {
				r.rcode = dns.RcodeNameError
			}
			r.ns = []dns.RR{z.soa}
			return r
		}
		if set.cname != nil && qtype != dns.TypeCNAME {
			r.answer = append(r.answer, set.cname)
			name = set.cname.(*dns.CNAME).Target
			if !z.owns(name) {
				r.chase = name
				return r
			}
			continue
		}
		got := z.records(set, qtype)
		r.answer = append(r.answer, got...)
		if len(got) == 0 {
			r.ns = []dns.RR{z.soa}
		}
		if qtype == dns.TypeSRV {
			r.extra = z.glue(got)
		}
		return r
	}
	r.rcode = dns.RcodeServerFailure // a CNAME loop
	return r
}

// records returns a name's records of one type.
func (z *zone) records(set *rrset, qtype uint16) []dns.RR {
	switch qtype {
	case dns.TypeA:
		return set.a
	case dns.TypeAAAA:
		return set.aaaa
	case dns.TypeSRV:
		return set.srv
	case dns.TypePTR:
		return set.ptr
	case dns.TypeCNAME:
		if set.cname != nil {
			return []dns.RR{set.cname}
		}
	}
	return nil
}

// glue returns the addresses of the SRV targets the zone holds.
func (z *zone) glue(srv []dns.RR) []dns.RR {
	var out []dns.RR
	seen := map[string]bool{}
	for _, rr := range srv {
		t := strings.ToLower(rr.(*dns.SRV).Target)
		if seen[t] {
			continue
		}
		seen[t] = true
		if set, _ := z.find(t); set != nil {
			out = append(append(out, set.a...), set.aaaa...)
		}
	}
	return out
}
