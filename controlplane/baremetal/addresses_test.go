package baremetal

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// register connects node's agent as its stream would, advertising info, until the test ends.
func register(t *testing.T, st *store.Store, node string, info *v1.NodeInfo) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	m := &Membership{Store: st, LeaseTTL: time.Minute, Log: slog.New(slog.DiscardHandler)}
	go m.Hooks().OnConnect(ctx, &v1.Hello{NodeName: node, Node: info})
	deadline := time.Now().Add(20 * time.Second)
	for {
		leases, err := st.Leases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := leases[node]; ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s never registered", node)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func slice(addressType, endpoints string) string {
	return "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: web-1, labels: {kubernetes.io/service-name: web}}\n" +
		"addressType: " + addressType + "\nports: [{port: 8080}]\nendpoints: " + endpoints
}

func kubeService(spec string) string {
	return "apiVersion: v1\nkind: Service\nmetadata: {name: web}\n" + spec
}

// TestSpecialAndNodeAddressesAreRefused: services may not take traffic on loopback, unspecified,
// multicast or link-local addresses (cloud metadata) nor on a node's own address, declared or
// registered; backends not on the special ones. The error names the field, in every form.
func TestSpecialAndNodeAddressesAreRefused(t *testing.T) {
	st := openStore(t)
	if _, err := applyYAML(t, st, base); err != nil {
		t.Fatal(err)
	}
	register(t, st, "edge-9", &v1.NodeInfo{Addresses: []string{"192.168.9.9", "fd00::9"}})
	cases := []struct{ name, doc, want string }{
		{"loopback VIP", native("  vips: [127.0.0.1]\n  ports: [{port: 80}]\n"), "spec.vips[0]: 127.0.0.1 is a loopback address"},
		{"IPv6 loopback VIP", native("  vips: ['::1']\n  ports: [{port: 80}]\n"), "spec.vips[0]: ::1 is a loopback address"},
		{"mapped loopback VIP", native("  vips: ['::ffff:127.0.0.1']\n  ports: [{port: 80}]\n"), "spec.vips[0]: 127.0.0.1 is a loopback address"},
		{"unspecified VIP", native("  vips: [0.0.0.0]\n  ports: [{port: 80}]\n"), "spec.vips[0]: 0.0.0.0 is the unspecified address"},
		{"IPv6 unspecified VIP", native("  vips: [10.0.0.50, '::']\n  ports: [{port: 80}]\n"), "spec.vips[1]: :: is the unspecified address"},
		{"multicast external IP", native("  externalIPs: [203.0.113.7, 224.0.0.1]\n  ports: [{port: 80}]\n"), "spec.externalIPs[1]: 224.0.0.1 is a multicast address"},
		{"IPv6 multicast external IP", native("  externalIPs: ['ff02::1']\n  ports: [{port: 80}]\n"), "spec.externalIPs[0]: ff02::1 is a multicast address"},
		{"metadata load-balancer IP", native("  type: LoadBalancer\n  loadBalancerIPs: [169.254.169.254]\n  ports: [{port: 80}]\n"), "spec.loadBalancerIPs[0]: 169.254.169.254 is a link-local address"},
		{"IPv6 link-local external IP", native("  externalIPs: ['fe80::1']\n  ports: [{port: 80}]\n"), "spec.externalIPs[0]: fe80::1 is a link-local address"},
		{"Kubernetes loopback clusterIP", kubeService("spec: {clusterIP: 127.0.0.1, ports: [{port: 80}]}"), "spec.clusterIPs[0]: 127.0.0.1 is a loopback address"},
		{"Kubernetes metadata ingress", kubeService("spec: {type: LoadBalancer, ports: [{port: 80}]}\nstatus: {loadBalancer: {ingress: [{ip: 169.254.169.254}]}}"), "status.loadBalancer.ingress[0].ip: 169.254.169.254 is a link-local address"},
		{"Kubernetes external IP on a declared node", kubeService("spec: {externalIPs: [192.168.1.1], ports: [{port: 22}]}"), "spec.externalIPs[0]: 192.168.1.1 is an address of node n1"},
		{"external IP on a Kubernetes Node's address", native("  externalIPs: [192.168.1.2]\n  ports: [{port: 22}]\n"), "spec.externalIPs[0]: 192.168.1.2 is an address of node n2"},
		{"VIP on a registered node", native("  vips: [192.168.9.9]\n  ports: [{port: 22}]\n"), "spec.vips[0]: 192.168.9.9 is an address of node edge-9"},
		{"IPv6 VIP on a registered node", native("  vips: ['fd00::9']\n  ports: [{port: 22}]\n"), "spec.vips[0]: fd00::9 is an address of node edge-9"},
		{"VIP on a node declared in the same apply", native("  vips: [192.168.1.3]\n  ports: [{port: 22}]\n") + "\n---\napiVersion: ganglion-proxy.io/v1\nkind: Node\nmetadata: {name: n3}\nspec: {addresses: [192.168.1.3]}",
			"spec.vips[0]: 192.168.1.3 is an address of node n3"},
		{"node declared on a service's VIP", "apiVersion: ganglion-proxy.io/v1\nkind: Node\nmetadata: {name: n3}\nspec: {addresses: [192.168.1.3, 10.0.0.10]}",
			"spec.addresses[1]: 10.0.0.10 is an address of Service default/taken (spec.vips[0])"},
		{"loopback backend", native("  ports: [{port: 80}]\n  backends: [{address: 127.0.0.1}]\n"), "spec.backends[0].address: 127.0.0.1 is a loopback address"},
		{"metadata backend", native("  ports: [{port: 80}]\n  backends: [{address: 10.1.0.5}, {address: 10.1.0.6}, {address: 169.254.169.254}]\n"), "spec.backends[2].address: 169.254.169.254 is a link-local address"},
		{"unspecified backend", native("  ports: [{port: 80}]\n  backends: [{address: '::'}]\n"), "spec.backends[0].address: :: is the unspecified address"},
		{"multicast backend", native("  ports: [{port: 80}]\n  backends: [{address: 239.1.1.1}]\n"), "spec.backends[0].address: 239.1.1.1 is a multicast address"},
		{"metadata endpoint", slice("IPv4", "[{addresses: [169.254.169.254]}]"), "endpoints[0].addresses[0]: 169.254.169.254 is a link-local address"},
		{"loopback IPv6 endpoint", slice("IPv6", "[{addresses: ['fd00::5']}, {addresses: ['::1']}]"), "endpoints[1].addresses[0]: ::1 is a loopback address"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { rejects(t, st, DefaultSettings(), c.doc, c.want) })
	}
}

// TestAllowedRangesAndHostNetworkBackends: what an operator allows by range is accepted, and a
// backend on a node's own address (a host-network workload) needs no allowance.
func TestAllowedRangesAndHostNetworkBackends(t *testing.T) {
	st := openStore(t)
	if _, err := applyYAML(t, st, base); err != nil {
		t.Fatal(err)
	}
	allowing := DefaultSettings()
	allowing.AllowedAddressRanges = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("169.254.0.0/16"),
		netip.MustParsePrefix("192.168.1.1/32"), netip.MustParsePrefix("fe80::/10")}
	cases := []struct {
		name string
		set  Settings
		doc  string
	}{
		{"host-network backend", DefaultSettings(), native("  ports: [{port: 80}]\n  backends: [{address: 192.168.1.1, node: n1}]\n")},
		{"allowed loopback VIP and backend", allowing, native("  vips: [127.0.0.5]\n  ports: [{port: 80}]\n  backends: [{address: 127.0.0.1}]\n")},
		{"allowed node address", allowing, native("  externalIPs: [192.168.1.1]\n  ports: [{port: 80}]\n")},
		{"allowed link-local endpoints", allowing, slice("IPv4", "[{addresses: [169.254.10.1]}]")},
		{"allowed IPv6 link-local external IP", allowing, native("  externalIPs: ['fe80::1']\n  ports: [{port: 80}]\n")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := applyWith(st, c.set, true, c.doc); err != nil {
				t.Error(err)
			}
		})
	}
	// Allowing one address allows no other: n2's stays refused.
	rejects(t, st, allowing, native("  externalIPs: [192.168.1.2]\n  ports: [{port: 80}]\n"), "spec.externalIPs[0]: 192.168.1.2 is an address of node n2")
}

// TestAllocationSkipsNodeAddresses: a VIP is never allocated on a node's address, even when the
// service range holds nodes.
func TestAllocationSkipsNodeAddresses(t *testing.T) {
	st := openStore(t)
	set := DefaultSettings()
	set.ServiceCIDR = netip.MustParsePrefix("192.168.1.0/24")
	if _, err := applyWith(st, set, false, base+"---\n"+native("  ports: [{port: 80}]\n")); err != nil {
		t.Fatal(err)
	}
	if got := storedService(t, st, "web").Spec.VIPs; len(got) != 1 || got[0] != "192.168.1.3" {
		t.Errorf("VIPs %v, want 192.168.1.3: .2 is node n2's", got)
	}
}
