package kube

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// dnsStream is an agent stream driven by the test: it says hello with the capabilities given,
// acknowledges every update and keeps what it was sent, as an agent that serves DNS would.
type dnsStream struct {
	st   v1.AgentService_StreamClient
	held map[string]*v1.Resource
	// last is the last update's upserts and removals, for tests of what one change sends.
	last []string
	// synced is set once the snapshot is complete.
	synced bool
}

// openDNSStream opens node's stream on replica i with a token bound to a pod on node.
func (c *cluster) openDNSStream(ctx context.Context, i int, node string, capabilities ...string) *dnsStream {
	c.t.Helper()
	tok := c.boundToken(agentSA, c.createPod(fmt.Sprintf("dns-%s-%d", node, time.Now().UnixNano()), node, agentSA), tokenAudience, 3600)
	st, err := v1.NewAgentServiceClient(c.anonConnTo(net.JoinHostPort(brainIPs[i], brainPort))).
		Stream(ctx, grpc.PerRPCCredentials(bearer(tok)))
	if err != nil {
		c.t.Fatal(err)
	}
	hello := &v1.Hello{NodeName: node, AgentVersion: "e2e-dns", Capabilities: capabilities}
	if err := st.Send(&v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: hello}}); err != nil {
		c.t.Fatal(err)
	}
	return &dnsStream{st: st, held: map[string]*v1.Resource{}}
}

// until applies and acknowledges updates until cond holds after one; the stream's context bounds
// the wait against hangs.
func (s *dnsStream) until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for {
		resp, err := s.st.Recv()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		u := resp.GetUpdate()
		if u == nil {
			t.Fatalf("waiting for %s: got %v, want an update", what, resp)
		}
		s.last = s.last[:0]
		for _, r := range u.Upserts {
			s.held[r.Name] = r
			s.last = append(s.last, r.Name)
		}
		for _, n := range u.Removals {
			delete(s.held, n)
			s.last = append(s.last, n)
		}
		if err := s.st.Send(&v1.StreamRequest{Message: &v1.StreamRequest_Ack{Ack: &v1.Ack{Generation: u.Generation}}}); err != nil {
			t.Fatal(err)
		}
		s.synced = s.synced || u.SnapshotComplete
		if s.synced && cond() {
			return
		}
	}
}

func (s *dnsStream) records(ns, name string) *v1.DNSRecords {
	return s.held[resname.DNS(ns, name)].GetDns()
}

// headlessSlice is the EndpointSlice the EndpointSlice controller would write for a headless
// service: labelled headless (what kube-proxy filters out), hostnames from the pods' spec.
func headlessSlice(service string, pods ...int) *discoveryv1.EndpointSlice {
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: service + "-e2e", Labels: map[string]string{
			discoveryv1.LabelServiceName: service, discoveryv1.LabelManagedBy: "e2e.ganglion-proxy.io",
			"service.kubernetes.io/headless": ""}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("sql"), Port: ptr.To[int32](netlab.PodPort), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, p := range pods {
		sl.Endpoints = append(sl.Endpoints, discoveryv1.Endpoint{
			Addresses: []string{netlab.LabPodIP(1, p)}, NodeName: ptr.To(nodeName(1)),
			Hostname: ptr.To(fmt.Sprintf("%s-%d", service, p)), Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
	}
	return sl
}

// testDNSRecords: a headless service's endpoints (with hostnames) and an ExternalName service's
// target reach an agent that announces the dns capability, and nothing of them reaches one that
// does not; a new endpoint is one update of the records alone.
func (c *cluster) testDNSRecords(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute) // a hang guard
	defer cancel()
	api := c.api.client
	db := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "dns-db"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "sql", Port: 5432}}}}
	ext := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "dns-ext"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}}
	for _, s := range []*corev1.Service{db, ext} {
		if _, err := api.CoreV1().Services("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatalf("create service %s: %v", s.Name, err)
		}
	}
	if _, err := api.DiscoveryV1().EndpointSlices("default").Create(ctx, headlessSlice("dns-db", 0), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	dns := c.openDNSStream(ctx, secBrain, nodeName(2), resname.CapabilityDNS)
	dns.until(t, "the records of dns-db and dns-ext", func() bool {
		eps := dns.records("default", "dns-db").GetEndpoints()
		return len(eps) == 1 && eps[0].Address == netlab.LabPodIP(1, 0) && eps[0].Hostname == "dns-db-0" &&
			dns.records("default", "dns-ext").GetExternalName() == "db.example.com"
	})

	// The records are in the brain: an agent without the capability gets a snapshot without them.
	plain := c.openDNSStream(ctx, secBrain, nodeName(3))
	plain.until(t, "a complete snapshot", func() bool { return plain.synced })
	for name := range plain.held {
		if resname.IsDNS(name) {
			t.Errorf("an agent without the dns capability was sent %s", name)
		}
	}

	sl := headlessSlice("dns-db", 0, 1)
	cur, err := api.DiscoveryV1().EndpointSlices("default").Get(ctx, sl.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	sl.ResourceVersion = cur.ResourceVersion
	if _, err := api.DiscoveryV1().EndpointSlices("default").Update(ctx, sl, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	dns.until(t, "dns-db's second endpoint", func() bool { return len(dns.records("default", "dns-db").GetEndpoints()) == 2 })
	if !slices.Equal(dns.last, []string{resname.DNS("default", "dns-db")}) {
		t.Errorf("the new endpoint's update carried %v, want only the records", dns.last)
	}
}
