package stream

import (
	"errors"
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func svcRes(base, version string) *v1.Resource {
	return &v1.Resource{Name: base + "/service", Version: version, Content: &v1.Resource_Service{Service: &v1.ServicePort{
		Internal: &v1.TrafficPolicy{Scope: v1.EndpointScope_ENDPOINT_SCOPE_CLUSTER}}}}
}

func setRes(base, kind, version string) *v1.Resource {
	return &v1.Resource{Name: base + "/" + kind, Version: version, Content: &v1.Resource_Endpoints{Endpoints: &v1.EndpointSet{Action: v1.TrafficAction_TRAFFIC_ACTION_REJECT}}}
}

// wire is u as the agent reads it off the stream.
func wire(t testing.TB, u *v1.Update) *update {
	t.Helper()
	b, err := proto.Marshal(&v1.StreamResponse{Message: &v1.StreamResponse_Update{Update: u}})
	if err != nil {
		t.Fatal(err)
	}
	var r response
	if err := r.parse(b); err != nil || r.update == nil {
		t.Fatalf("parse: %v (update %v)", err, r.update)
	}
	return r.update
}

func TestApplyGroupsResourcesIntoPorts(t *testing.T) {
	h := newHeld(nil)
	dp := dataplane.NewRecording()
	apply := func(c dataplane.Change) map[string]error { return dp.Apply(t.Context(), c) }
	rej := applyUpdate(h, apply, wire(t, &v1.Update{Upserts: []*v1.Resource{svcRes("ns/a/v4", "1"), setRes("ns/a/v4", "cluster", "1"), svcRes("ns/b/v4", "1"), setRes("ns/b/v4", "cluster", "1")}}))
	if len(rej) != 0 || len(dp.Bases()) != 2 || len(dp.Changes()) != 1 {
		t.Fatalf("rejections %v, bases %v, changes %d", rej, dp.Bases(), len(dp.Changes()))
	}
	// Removing a port's service removes the port; removing a resource never held is a no-op.
	rej = applyUpdate(h, apply, wire(t, &v1.Update{Removals: []string{"ns/b/v4/service", "ns/b/v4/cluster", "ns/zz/v4/service"}}))
	if len(rej) != 0 || len(dp.Bases()) != 1 || h.len() != 2 {
		t.Fatalf("after removal: rejections %v, bases %v, held %d", rej, dp.Bases(), h.len())
	}
}

func TestApplyRejectsAFailedPortAndKeepsItsLastGoodResources(t *testing.T) {
	h := newHeld(nil)
	dp := dataplane.NewRecording()
	apply := func(c dataplane.Change) map[string]error { return dp.Apply(t.Context(), c) }
	applyUpdate(h, apply, wire(t, &v1.Update{Upserts: []*v1.Resource{svcRes("ns/a/v4", "1"), setRes("ns/a/v4", "cluster", "1")}}))
	dp.Fail = func(dataplane.Port) error { return errors.New("kernel said no") }
	rej := applyUpdate(h, apply, wire(t, &v1.Update{Upserts: []*v1.Resource{setRes("ns/a/v4", "cluster", "2")}}))
	if len(rej) != 1 || rej[0].Name != "ns/a/v4/cluster" || rej[0].Version != "2" {
		t.Fatalf("rejections %v", rej)
	}
	if v := h.version("ns/a/v4/cluster"); v != "1" {
		t.Errorf("held %s after a rejection, want the last good 1", v)
	}
}

func TestAPortMissingTheSetItsPolicyNamesIsRejected(t *testing.T) {
	h := newHeld(nil)
	dp := dataplane.NewRecording()
	rej := applyUpdate(h, func(c dataplane.Change) map[string]error { return dp.Apply(t.Context(), c) },
		wire(t, &v1.Update{Upserts: []*v1.Resource{svcRes("ns/a/v4", "1")}}))
	if len(rej) != 1 || len(dp.Bases()) != 0 || h.len() != 0 {
		t.Errorf("rejections %v, bases %v, held %v", rej, dp.Bases(), h.records)
	}
}

func TestDNSRecordsAreHeldButNeverReachTheDataplane(t *testing.T) {
	h := newHeld(nil)
	dp := dataplane.NewRecording()
	apply := func(c dataplane.Change) map[string]error { return dp.Apply(t.Context(), c) }
	dnsRes := &v1.Resource{Name: "ns/db/dns", Version: "1", Content: &v1.Resource_Dns{Dns: &v1.DNSRecords{
		Namespace: "ns", Name: "db", Endpoints: []*v1.DNSEndpoint{{Address: "10.244.1.10"}}}}}
	u := &v1.Update{Upserts: []*v1.Resource{dnsRes}}
	if rej := applyUpdate(h, apply, wire(t, u)); len(rej) != 0 || len(dp.Changes()) != 0 {
		t.Fatalf("rejections %v, dataplane changes %v: DNS records must not reach the dataplane", rej, dp.Changes())
	}
	if got := h.dnsRecords(); len(got) != 1 || got[0].Name != "db" || !touches(wire(t, u), resname.KindDNS) {
		t.Fatalf("held DNS records %v (touches %v)", got, touches(wire(t, u), resname.KindDNS))
	}
	rm := &v1.Update{Removals: []string{"ns/db/dns"}}
	if rej := applyUpdate(h, apply, wire(t, rm)); len(rej) != 0 || len(dp.Changes()) != 0 || len(h.dnsRecords()) != 0 || !touches(wire(t, rm), resname.KindDNS) {
		t.Fatalf("after removal: rejections %v, changes %v, held %v", rej, dp.Changes(), h.dnsRecords())
	}
	if touches(wire(t, &v1.Update{Upserts: []*v1.Resource{svcRes("ns/a/v4", "1")}}), resname.KindDNS) {
		t.Error("a service port update counted as a DNS change")
	}
}

func TestAnnouncementsAreHeldAndGatheredButNeverReachTheDataplane(t *testing.T) {
	h := newHeld(nil)
	dp := dataplane.NewRecording()
	apply := func(c dataplane.Change) map[string]error { return dp.Apply(t.Context(), c) }
	ann := func(name string, bgp, l2 []string) *v1.Resource {
		return &v1.Resource{Name: "ns/" + name + "/announce", Version: "1", Content: &v1.Resource_Announcement{
			Announcement: &v1.Announcement{Namespace: "ns", Name: name, Bgp: bgp, L2: l2}}}
	}
	conf := &v1.BGPConfig{LocalAsn: 64512, Peers: []*v1.BGPPeer{{Address: "192.168.77.1", Asn: 64500}}}
	u := &v1.Update{Upserts: []*v1.Resource{
		ann("web", []string{"203.0.113.10", "2001:db8::10"}, []string{"203.0.113.10"}),
		ann("api", []string{"203.0.113.10", "198.51.100.1"}, nil),
		{Name: resname.NodeBGP, Version: "1", Content: &v1.Resource_Bgp{Bgp: conf}},
	}}
	if rej := applyUpdate(h, apply, wire(t, u)); len(rej) != 0 || len(dp.Changes()) != 0 {
		t.Fatalf("rejections %v, dataplane changes %v: announcements must not reach the dataplane", rej, dp.Changes())
	}
	w := h.announcements()
	if got := fmt.Sprint(w.BGP, w.L2, w.BGPConfig.GetLocalAsn()); got != "[198.51.100.1 203.0.113.10 2001:db8::10] [203.0.113.10] 64512" {
		t.Errorf("gathered %s", got)
	}
	if !touches(wire(t, u), resname.KindAnnounce, resname.KindBGP) || touches(wire(t, u), resname.KindDNS) {
		t.Error("touches misreads the update's kinds")
	}
}

func TestAgentsOfOneShareHoldOneCopy(t *testing.T) {
	share := NewShare()
	a, b := newHeld(share), newHeld(share)
	dp := dataplane.NewRecording()
	apply := func(c dataplane.Change) map[string]error { return dp.Apply(t.Context(), c) }
	u := &v1.Update{Upserts: []*v1.Resource{svcRes("ns/a/v4", "1"), setRes("ns/a/v4", "cluster", "1")}}
	applyUpdate(a, apply, wire(t, u))
	applyUpdate(b, apply, wire(t, u))
	if a.records["ns/a/v4/cluster"] != b.records["ns/a/v4/cluster"] || a.records["ns/a/v4/cluster"] == nil {
		t.Error("two agents of one share hold two copies of a resource version")
	}
	applyUpdate(b, apply, wire(t, &v1.Update{Upserts: []*v1.Resource{setRes("ns/a/v4", "cluster", "2")}}))
	if a.version("ns/a/v4/cluster") != "1" || b.version("ns/a/v4/cluster") != "2" {
		t.Errorf("versions %s and %s, want 1 and 2", a.version("ns/a/v4/cluster"), b.version("ns/a/v4/cluster"))
	}
}

func TestAnUndecodableResourceOfNoPortIsRejected(t *testing.T) {
	h := newHeld(nil)
	dp := dataplane.NewRecording()
	apply := func(c dataplane.Change) map[string]error { return dp.Apply(t.Context(), c) }
	u := wire(t, &v1.Update{})
	// A DNS resource whose content is cut short: the frame itself is well formed.
	u.upserts = append(u.upserts, resource{name: "ns/db/dns", version: "1", content: []byte{6<<3 | 2, 5, 1}})
	rej := applyUpdate(h, apply, u)
	if len(rej) != 1 || rej[0].Name != "ns/db/dns" || h.len() != 0 || len(h.dnsRecords()) != 0 {
		t.Errorf("rejections %v, held %d", rej, h.len())
	}
}
