package stream_test

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/digest"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

const dbRecords = "default/db/dns"

// withHeadless is services(2) plus the headless service default/db with one ready endpoint.
func withHeadless(e *compute.Engine) compute.Delta {
	d := services(2)(e)
	d.Merge(e.SetService(&model.Service{Namespace: "default", Name: "db", Type: model.TypeClusterIP, Headless: true,
		Ports: []model.ServicePort{{Name: "sql", Protocol: model.TCP, Port: 5432}}}))
	d.Merge(e.SetSlice(dbSlice("10.1.0.1")))
	return d
}

func dbSlice(addrs ...string) *model.EndpointSlice {
	sl := &model.EndpointSlice{Namespace: "default", Name: "db-1", Service: "db", Family: model.IPv4,
		Ports: []model.EndpointPort{{Name: "sql", Protocol: model.TCP, Port: 5432}}}
	for _, a := range addrs {
		sl.Endpoints = append(sl.Endpoints, model.Endpoint{Address: netip.MustParseAddr(a), Ready: true, Serving: true, NodeName: "n1"})
	}
	return sl
}

// helloWith opens a stream for node announcing capabilities and holding what held digests.
func helloWith(t *testing.T, s rawStream, node string, held []uint64, capabilities ...string) rawStream {
	t.Helper()
	s.send(t, &v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: &v1.Hello{
		NodeName: node, Capabilities: capabilities, HeldDigests: held}}})
	return s
}

// snapshot receives and acknowledges a complete snapshot, returning what it holds by name.
func snapshot(t *testing.T, s rawStream) map[string]string {
	t.Helper()
	held := map[string]string{}
	for {
		u := s.update(t)
		for _, r := range u.Upserts {
			held[r.Name] = r.Version
		}
		s.ack(t, u.Generation)
		if u.SnapshotComplete {
			return held
		}
	}
}

func digestsOf(held map[string]string) []uint64 {
	set := digest.New(digest.Buckets(len(held)))
	for name, version := range held {
		set.Add(name, version)
	}
	return set
}

func dnsNames(held map[string]string) []string {
	var out []string
	for name := range held {
		if resname.IsDNS(name) {
			out = append(out, name)
		}
	}
	return out
}

// DNS records reach only agents that announce the capability; each agent's resume digests match
// what it was sent, so neither is asked for a held list on reconnecting.
func TestDNSRecordsOnlyForAgentsThatServeDNS(t *testing.T) {
	_, addr := serve(t, stream.Options{}, withHeadless)
	conn := dial(t, addr)
	for _, c := range []struct {
		name string
		caps []string
		want []string
	}{
		{"no capabilities", nil, nil},
		{"other capabilities", []string{"something-else"}, nil},
		{"dns", []string{resname.CapabilityDNS}, []string{dbRecords}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := helloWith(t, open(t, conn), "n1", nil, c.caps...)
			held := snapshot(t, s)
			if got := dnsNames(held); !slices.Equal(got, c.want) {
				t.Fatalf("snapshot's DNS records = %v, want %v", got, c.want)
			}
			if len(held) != 4+len(c.want) { // two ClusterIP services: service and cluster each
				t.Fatalf("snapshot holds %v, want the 4 dataplane resources and %v", held, c.want)
			}
			s.end()

			// Reconnecting with what it holds: nothing differs, so no held request, an empty
			// complete snapshot.
			r := helloWith(t, open(t, conn), "n1", digestsOf(held), c.caps...)
			resp, err := r.recv(t)
			if err != nil {
				t.Fatal(err)
			}
			u := resp.GetUpdate()
			if u == nil || !u.SnapshotComplete || len(u.Upserts)+len(u.Removals) != 0 {
				t.Fatalf("resume got %v, want an empty complete snapshot", resp)
			}
		})
	}
}

// A change to a headless service's endpoints sends its records, alone, to the agent that serves
// DNS, and nothing to the one that does not.
func TestHeadlessEndpointChangeSendsOneSmallUpdate(t *testing.T) {
	hub, addr := serve(t, stream.Options{}, withHeadless)
	conn := dial(t, addr)
	plain := helloWith(t, open(t, conn), "n1", nil)
	snapshot(t, plain)
	dns := helloWith(t, open(t, conn), "n2", nil, resname.CapabilityDNS)
	snapshot(t, dns)

	hub.Apply(time.Time{}, 2, func(e *compute.Engine) compute.Delta { return e.SetSlice(dbSlice("10.1.0.1", "10.1.0.2")) })
	u := dns.update(t)
	if len(u.Upserts) != 1 || u.Upserts[0].Name != dbRecords || len(u.Removals) != 0 {
		t.Fatalf("DNS agent got %v, want only %s", u, dbRecords)
	}
	if eps := u.Upserts[0].GetDns().GetEndpoints(); len(eps) != 2 || eps[1].Address != "10.1.0.2" {
		t.Fatalf("records name %v, want 10.1.0.1 and 10.1.0.2", eps)
	}
	dns.ack(t, u.Generation)

	// Updates go out in order: had the plain agent been sent the records, they would come before
	// (or with) this later dataplane change.
	hub.Apply(time.Time{}, 3, func(e *compute.Engine) compute.Delta { return e.DeleteService(testService(1).Key()) })
	u = plain.update(t)
	for _, r := range u.Upserts {
		t.Errorf("plain agent got an upsert of %s after a headless service's change", r.Name)
	}
	if len(u.Removals) != 2 || !strings.HasPrefix(u.Removals[0], "default/svc-1") {
		t.Errorf("plain agent's removals = %v, want svc-1's two resources", u.Removals)
	}
}
