package stream

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/internal/digest"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/nodeagent/announce"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// record is one held resource version: its version, which acknowledgements, digests and the held
// list need, and its content field (tag included) as it arrived, which rebuilding a port decodes.
// A record is never modified once made: the agents of one process may share it (Share).
type record struct {
	version string
	content []byte
}

// field returns the content's payload when its oneof field is num.
func (r *record) field(num protowire.Number) ([]byte, bool) {
	if r == nil || len(r.content) == 0 {
		return nil, false
	}
	n, _, l := protowire.ConsumeTag(r.content)
	if n != num || l < 0 {
		return nil, false
	}
	v, m := protowire.ConsumeBytes(r.content[l:])
	return v, m >= 0
}

// service decodes the content when it is a service port; nil when it is something else.
func (r *record) service() (*v1.ServicePort, error) {
	b, ok := r.field(fieldResourceService)
	if !ok {
		return nil, nil
	}
	return decodeServicePort(b)
}

// endpoints decodes the content when it is an endpoint set; nil when it is something else.
func (r *record) endpoints() (*v1.EndpointSet, error) {
	b, ok := r.field(fieldResourceEndpoints)
	if !ok {
		return nil, nil
	}
	return decodeEndpointSet(b)
}

// resource decodes the record into the Resource name.
func (r *record) resource(name string) (*v1.Resource, error) {
	m := &v1.Resource{}
	if err := proto.Unmarshal(r.content, m); err != nil {
		return nil, err
	}
	m.Name, m.Version = name, r.version
	return m, nil
}

// held is the agent's last good state: every resource it applied, by name. Resources the
// dataplane programs are kept as records only, decoded again when a port of theirs must be
// rebuilt: the dataplane keeps its own form of them, and a decoded copy here would double it.
// The others (probe sets, DNS records, announcements, BGP config) are few and read whole by the
// prober, the DNS server and the announcer on every change of their kind: they are kept decoded too.
type held struct {
	records map[string]*record
	decoded map[string]*v1.Resource // the resources that are not the dataplane's
	share   *Share
}

func newHeld(share *Share) *held {
	return &held{records: map[string]*record{}, decoded: map[string]*v1.Resource{}, share: share}
}

// len returns how many resources are held.
func (h *held) len() int { return len(h.records) }

// version returns the version of a held resource, "" when it is not held.
func (h *held) version(name string) string {
	if r := h.records[name]; r != nil {
		return r.version
	}
	return ""
}

// record makes the record of a received resource, shared when the agent shares.
func (h *held) record(r resource) *record {
	if h.share != nil {
		return h.share.record(r)
	}
	return &record{version: r.version, content: r.content}
}

// digests summarizes the state for a hello; nil when it is empty.
func (h *held) digests() []uint64 {
	if len(h.records) == 0 {
		return nil
	}
	set := digest.New(digest.Buckets(len(h.records)))
	for name, r := range h.records {
		set.Add(name, r.version)
	}
	return set
}

// list returns the held resources that fall in the given buckets of n.
func (h *held) list(buckets []uint32, n int) []*v1.HeldResource {
	want := map[int]bool{}
	for _, b := range buckets {
		want[int(b)] = true
	}
	var out []*v1.HeldResource
	for name, r := range h.records {
		if want[digest.Bucket(name, n)] {
			out = append(out, &v1.HeldResource{Name: name, Version: r.version})
		}
	}
	return out
}

// probeSets returns every held probe set.
func (h *held) probeSets() []*v1.ProbeSet {
	var out []*v1.ProbeSet
	for _, r := range h.decoded {
		if ps := r.GetProbes(); ps != nil {
			out = append(out, ps)
		}
	}
	return out
}

// dnsRecords returns every held DNS records resource (headless and ExternalName services).
func (h *held) dnsRecords() []*v1.DNSRecords {
	var out []*v1.DNSRecords
	for _, r := range h.decoded {
		if d := r.GetDns(); d != nil {
			out = append(out, d)
		}
	}
	return out
}

// announcements returns what the node announces, from its held announcements and BGP config.
func (h *held) announcements() announce.Want {
	var as []*v1.Announcement
	for _, r := range h.decoded {
		if a := r.GetAnnouncement(); a != nil {
			as = append(as, a)
		}
	}
	return announce.FromState(as, h.decoded[resname.NodeBGP].GetBgp())
}

// bases returns the bases of every held port.
func (h *held) bases() map[string]bool {
	out := map[string]bool{}
	for name := range h.records {
		if b, kind := resname.Split(name); kind == resname.KindService {
			out[b] = true
		}
	}
	return out
}

// port assembles the port of a base from the state, decoding its resources; ok is false when
// its service is gone.
func (h *held) port(base string) (p dataplane.Port, ok bool, err error) {
	svc, err := h.records[resname.Join(base, resname.KindService)].service()
	if err != nil {
		return p, true, fmt.Errorf("port %s: service: %w", base, err)
	}
	if svc == nil {
		return p, false, nil
	}
	p = dataplane.Port{Base: base, Service: svc}
	if p.Cluster, err = h.records[resname.Join(base, resname.KindCluster)].endpoints(); err != nil {
		return p, true, fmt.Errorf("port %s: cluster set: %w", base, err)
	}
	if p.Local, err = h.records[resname.Join(base, resname.KindLocal)].endpoints(); err != nil {
		return p, true, fmt.Errorf("port %s: local set: %w", base, err)
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
func touches(u *update, kinds ...string) bool {
	for _, r := range u.upserts {
		if _, kind := resname.Split(r.name); slices.Contains(kinds, kind) {
			return true
		}
	}
	for _, name := range u.removals {
		if _, kind := resname.Split(name); slices.Contains(kinds, kind) {
			return true
		}
	}
	return false
}

// touch is a change an update makes to a resource of the dataplane: what to restore should the
// port of base be refused.
type touch struct {
	base, name string
	prev       *record // nil when it was not held
}

// applyUpdate applies an update to the state and the dataplane, port by port. A port the
// dataplane refuses keeps its previous resources in the state, and each of its resources in the
// update is returned as rejected. A resource of no port that cannot be decoded is rejected and
// not held.
func applyUpdate(h *held, apply func(dataplane.Change) map[string]error, u *update) []*v1.Rejection {
	var rejections []*v1.Rejection
	var touched []touch
	// Probe sets, DNS records and announcements are not the dataplane's: they are held, and the
	// prober, the DNS server and the announcer follow them.
	for _, r := range u.upserts {
		b, kind := resname.Split(r.name)
		if forDataplane(kind) {
			touched = append(touched, touch{b, r.name, h.records[r.name]})
			h.records[r.name] = h.record(r)
			continue
		}
		rec := h.record(r)
		m, err := rec.resource(r.name)
		if err != nil {
			rejections = append(rejections, &v1.Rejection{Name: r.name, Version: r.version, Error: fmt.Sprintf("undecodable: %v", err)})
			continue
		}
		h.records[r.name], h.decoded[r.name] = rec, m
	}
	for _, name := range u.removals {
		prev := h.records[name]
		if prev == nil {
			continue // never held: nothing to undo
		}
		delete(h.records, name)
		if b, kind := resname.Split(name); forDataplane(kind) {
			touched = append(touched, touch{b, name, prev})
		} else {
			delete(h.decoded, name)
		}
	}
	if len(touched) == 0 {
		return rejections
	}

	// The ports the update touches, each once, in order of base.
	order := make([]int, len(touched))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int { return strings.Compare(touched[i].base, touched[j].base) })
	var change dataplane.Change
	var failed map[string]error
	for i, t := range order {
		b := touched[t].base
		if i > 0 && touched[order[i-1]].base == b {
			continue
		}
		p, ok, err := h.port(b)
		switch {
		case err != nil:
			if failed == nil {
				failed = map[string]error{}
			}
			failed[b] = err
		case ok:
			change.Upserts = append(change.Upserts, p)
		default:
			change.Removals = append(change.Removals, b)
		}
	}
	if len(change.Upserts)+len(change.Removals) > 0 {
		for b, err := range apply(change) {
			if failed == nil {
				failed = map[string]error{}
			}
			failed[b] = err
		}
	}
	if len(failed) == 0 {
		return rejections
	}

	// Undo the refused ports' changes, the last first.
	for i := len(touched) - 1; i >= 0; i-- {
		t := touched[i]
		err := failed[t.base]
		if err == nil {
			continue
		}
		rejections = append(rejections, &v1.Rejection{Name: t.name, Version: h.version(t.name), Error: err.Error()})
		if t.prev != nil {
			h.records[t.name] = t.prev
		} else {
			delete(h.records, t.name)
		}
	}
	slices.SortStableFunc(rejections, func(a, b *v1.Rejection) int { return strings.Compare(a.Name, b.Name) })
	return rejections
}
