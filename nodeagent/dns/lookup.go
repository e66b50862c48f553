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

// owns reports whether the zone answers name (lowercase FQDN) itself: names inside the cluster
// domain, and the reverse names of the addresses it holds. Every other name is forwarded.
func (z *zone) owns(name string) bool {
	return dns.IsSubDomain(z.domain, name) || z.names[name] != nil
}

// lookup answers a question for a name the zone owns, following CNAMEs inside the zone.
func (z *zone) lookup(name string, qtype uint16) result {
	var r result
	if name == z.domain && qtype == dns.TypeSOA {
		r.answer = []dns.RR{z.soa}
		return r
	}
	for hops := 0; hops < 8; hops++ {
		set := z.names[name]
		if set == nil {
			if len(r.answer) > 0 {
				r.chase = name // a CNAME left the zone's records
				return r
			}
			if !z.exists[name] {
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
		if set := z.names[t]; set != nil {
			out = append(append(out, set.a...), set.aaaa...)
		}
	}
	return out
}
