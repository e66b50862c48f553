package stream

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/ganglion-proxy/ganglion/internal/digest"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/nodeagent/announce"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// held is the agent's last good state: every resource it applied, by name.
type held map[string]*v1.Resource

// digests summarizes the state for a hello; nil when it is empty.
func (h held) digests() []uint64 {
	if len(h) == 0 {
		return nil
	}
	set := digest.New(digest.Buckets(len(h)))
	for name, r := range h {
		set.Add(name, r.Version)
	}
	return set
}

// list returns the held resources that fall in the given buckets of n.
func (h held) list(buckets []uint32, n int) []*v1.HeldResource {
	want := map[int]bool{}
	for _, b := range buckets {
		want[int(b)] = true
	}
	var out []*v1.HeldResource
	for name, r := range h {
		if want[digest.Bucket(name, n)] {
			out = append(out, &v1.HeldResource{Name: name, Version: r.Version})
		}
	}
	return out
}

// probeSets returns every held probe set.
func (h held) probeSets() []*v1.ProbeSet {
	var out []*v1.ProbeSet
	for _, r := range h {
		if ps := r.GetProbes(); ps != nil {
			out = append(out, ps)
		}
	}
	return out
}

// dnsRecords returns every held DNS records resource (headless and ExternalName services).
func (h held) dnsRecords() []*v1.DNSRecords {
	var out []*v1.DNSRecords
	for _, r := range h {
		if d := r.GetDns(); d != nil {
			out = append(out, d)
		}
	}
	return out
}

// bases returns the bases of every held port.
func (h held) bases() map[string]bool {
	out := map[string]bool{}
	for name := range h {
		if b, kind := resname.Split(name); kind == resname.KindService {
			out[b] = true
		}
	}
	return out
}

// port assembles the port of a base from the state; ok is false when its service is gone.
func (h held) port(base string) (dataplane.Port, bool, error) {
	svc := h[resname.Join(base, resname.KindService)].GetService()
	if svc == nil {
		return dataplane.Port{}, false, nil
	}
	p := dataplane.Port{
		Base:    base,
		Service: svc,
		Cluster: h[resname.Join(base, resname.KindCluster)].GetEndpoints(),
		Local:   h[resname.Join(base, resname.KindLocal)].GetEndpoints(),
	}
	for _, pol := range []*v1.TrafficPolicy{svc.Internal, svc.External} {
		if pol == nil {
			continue
		}
		if pol.Scope == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL && p.Local == nil ||
			pol.Scope != v1.EndpointScope_ENDPOINT_SCOPE_LOCAL && p.Cluster == nil {
			return p, true, fmt.Errorf("port %s: the %s endpoint set its policy names is missing", base, pol.Scope)
		}
	}
	return p, true, nil
}

// forDataplane reports whether resources of a kind are the dataplane's.
func forDataplane(kind string) bool {
	switch kind {
	case resname.KindProbes, resname.KindDNS, resname.KindAnnounce, resname.KindBGP:
		return false
	}
	return true
}

// touches reports whether an update changes resources of one of kinds.
func touches(u *v1.Update, kinds ...string) bool {
	for _, r := range u.Upserts {
		if _, kind := resname.Split(r.Name); slices.Contains(kinds, kind) {
			return true
		}
	}
	for _, name := range u.Removals {
		if _, kind := resname.Split(name); slices.Contains(kinds, kind) {
			return true
		}
	}
	return false
}

// announcements returns what the node announces, from its held announcements and BGP config.
func (h held) announcements() announce.Want {
	var as []*v1.Announcement
	for _, r := range h {
		if a := r.GetAnnouncement(); a != nil {
			as = append(as, a)
		}
	}
	return announce.FromState(as, h[resname.NodeBGP].GetBgp())
}

// applyUpdate applies an update to the state and the dataplane, port by port. A port the
// dataplane refuses keeps its previous resources in the state, and each of its resources in the
// update is returned as rejected.
func applyUpdate(h held, apply func(dataplane.Change) map[string]error, u *v1.Update) []*v1.Rejection {
	prev := map[string]*v1.Resource{}
	touched := map[string][]string{} // base -> names in this update
	// Probe sets, DNS records and announcements are not the dataplane's: they are held, and the
	// prober, the DNS server and the announcer follow them.
	for _, r := range u.Upserts {
		prev[r.Name] = h[r.Name]
		h[r.Name] = r
		if b, kind := resname.Split(r.Name); forDataplane(kind) {
			touched[b] = append(touched[b], r.Name)
		}
	}
	for _, name := range u.Removals {
		if _, ok := h[name]; !ok {
			continue // never held: nothing to undo
		}
		prev[name] = h[name]
		delete(h, name)
		if b, kind := resname.Split(name); forDataplane(kind) {
			touched[b] = append(touched[b], name)
		}
	}

	var change dataplane.Change
	failed := map[string]error{}
	for _, b := range slices.Sorted(maps.Keys(touched)) {
		p, ok, err := h.port(b)
		switch {
		case err != nil:
			failed[b] = err
		case ok:
			change.Upserts = append(change.Upserts, p)
		default:
			change.Removals = append(change.Removals, b)
		}
	}
	if len(change.Upserts)+len(change.Removals) > 0 {
		maps.Copy(failed, apply(change))
	}

	var rejections []*v1.Rejection
	for b, err := range failed {
		for _, name := range touched[b] {
			version := ""
			if r := h[name]; r != nil {
				version = r.Version
			}
			rejections = append(rejections, &v1.Rejection{Name: name, Version: version, Error: err.Error()})
			if p := prev[name]; p != nil {
				h[name] = p
			} else {
				delete(h, name)
			}
		}
	}
	slices.SortFunc(rejections, func(a, b *v1.Rejection) int { return strings.Compare(a.Name, b.Name) })
	return rejections
}
