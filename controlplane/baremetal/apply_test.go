package baremetal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	url := func() string { return "http://" + testenv.FreeAddr(t) }
	st, err := store.Open(context.Background(), store.Config{DataDir: t.TempDir(), ClientURL: url(), PeerURL: url(), Log: slog.New(slog.DiscardHandler), EtcdLogLevel: "panic"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func applyYAML(t *testing.T, st *store.Store, yaml string) ([]store.Key, error) {
	t.Helper()
	return applyWith(st, DefaultSettings(), false, yaml)
}

func applyWith(st *store.Store, set Settings, dryRun bool, yaml string) ([]store.Key, error) {
	objs, err := Decode("test.yaml", []byte(yaml))
	if err != nil {
		return nil, err
	}
	res, err := Apply(context.Background(), st, objs, set, dryRun)
	return append(res.Stored, res.Unchanged...), err
}

// goodDoc goes first in every rejected apply: a valid document must not be stored either.
var goodDoc = strings.Replace(native("  ports: [{port: 8080}]\n"), "name: web", "name: good", 1) + "---\n"

// rejects applies goodDoc and doc with set: the error must name doc (the second document) and
// contain want, and the store must not change.
func rejects(t *testing.T, st *store.Store, set Settings, doc, want string) {
	t.Helper()
	before, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	_, err = applyWith(st, set, false, goodDoc+doc)
	if err == nil {
		t.Fatalf("accepted:\n%s", doc)
	}
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "test.yaml#") {
		t.Errorf("error %q\nwant it to name the document and contain %q", err, want)
	}
	after, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation || len(after.Items) != len(before.Items) {
		t.Errorf("the store changed: %d items at generation %d, was %d at %d", len(after.Items), after.Generation, len(before.Items), before.Generation)
	}
}

// base is what every bad-manifest case is applied on top of: two nodes and a service holding
// 10.0.0.10:80 and node port 30080.
const base = `
apiVersion: ganglion-proxy.io/v1
kind: Node
metadata: {name: n1}
spec: {addresses: [192.168.1.1], zone: a}
---
apiVersion: v1
kind: Node
metadata: {name: n2, labels: {topology.kubernetes.io/zone: b}}
status: {addresses: [{type: InternalIP, address: 192.168.1.2}]}
---
apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: taken}
spec:
  type: NodePort
  vips: [10.0.0.10]
  ports: [{port: 80, nodePort: 30080}]
  backends: [{address: 10.1.0.1, node: n1}]
`

func native(spec string) string {
	return "apiVersion: ganglion-proxy.io/v1\nkind: Service\nmetadata: {name: web}\nspec:\n" + spec
}

// TestBadManifestsAreRejectedWithTheirFieldAndStoreNothing applies each bad document together
// with a good one: the error must name the document and field, and nothing may be stored.
func TestBadManifestsAreRejectedWithTheirFieldAndStoreNothing(t *testing.T) {
	st := openStore(t)
	if _, err := applyYAML(t, st, base); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ name, doc, want string }{
		{"not YAML", "{{{", "#2: document: not YAML"},
		{"no kind", "apiVersion: v1\nmetadata: {name: x}", "apiVersion/kind: both are required"},
		{"unknown kind", "apiVersion: v1\nkind: Pod\nmetadata: {name: x}", "kind: v1 Pod is not accepted"},
		{"unknown field", native("  ports: [{port: 80}]\n  portz: []\n"), `unknown field "portz"`},
		{"missing name", "apiVersion: ganglion-proxy.io/v1\nkind: Service\nspec: {ports: [{port: 80}]}", "metadata.name: required"},
		{"bad name", strings.Replace(native("  ports: [{port: 80}]\n"), "name: web", "name: Web_1", 1), `metadata.name: "Web_1": a lowercase RFC 1123 label`},
		{"bad namespace", strings.Replace(native("  ports: [{port: 80}]\n"), "{name: web}", "{name: web, namespace: NS}", 1), "metadata.namespace"},
		{"bad type", native("  type: Magic\n  ports: [{port: 80}]\n"), `spec.type: "Magic" is not ClusterIP`},
		{"no ports", native("  vips: [10.0.0.20]\n"), "spec.ports: at least one port is required"},
		{"port zero", native("  ports: [{port: 0}]\n"), "spec.ports[0].port: 0 is not a port number"},
		{"port too big", native("  ports: [{port: 70000}]\n"), "spec.ports[0].port: 70000 is not a port number"},
		{"bad protocol", native("  ports: [{port: 80, protocol: ICMP}]\n"), `spec.ports[0].protocol: "ICMP" is not TCP, UDP or SCTP`},
		{"unnamed multi-port", native("  ports: [{port: 80}, {port: 81}]\n"), "spec.ports[0].name: required when a service has several ports"},
		{"duplicate port name", native("  ports: [{name: a, port: 80}, {name: a, port: 81}]\n"), `spec.ports[1].name: "a" is used twice`},
		{"duplicate port", native("  ports: [{name: a, port: 80}, {name: b, port: 80}]\n"), "spec.ports[1].port: 80/TCP is listed twice"},
		{"node port on ClusterIP", native("  ports: [{port: 80, nodePort: 30001}]\n"), "spec.ports[0].nodePort: only NodePort and LoadBalancer"},
		{"node port out of range", native("  type: NodePort\n  ports: [{port: 80, nodePort: 80}]\n"), "spec.ports[0].nodePort: 80 is outside the node port range 30000-32767"},
		{"node port taken", native("  type: NodePort\n  ports: [{port: 81, nodePort: 30080}]\n"), "spec.ports[0].nodePort: 30080/TCP is already taken by Service default/taken"},
		{"VIP:port taken", native("  vips: [10.0.0.10]\n  ports: [{port: 80}]\n"), "spec.ports[0]: 10.0.0.10:80/TCP is already taken by Service default/taken"},
		{"bad VIP", native("  vips: [10.0.0.300]\n  ports: [{port: 80}]\n"), `spec.vips[0]: "10.0.0.300" is not an IP address`},
		{"two VIPs of a family", native("  vips: [10.0.0.21, 10.0.0.22]\n  ports: [{port: 80}]\n"), "spec.vips[1]: a second VIP of the same family"},
		{"bad external IP", native("  externalIPs: [nope]\n  ports: [{port: 80}]\n"), `spec.externalIPs[0]: "nope" is not an IP address`},
		{"LB IP on ClusterIP", native("  loadBalancerIPs: [203.0.113.1]\n  ports: [{port: 80}]\n"), "spec.loadBalancerIPs: only LoadBalancer services"},
		{"bad source range", native("  type: LoadBalancer\n  loadBalancerSourceRanges: [10.0.0.0/33]\n  ports: [{port: 80}]\n"), `spec.loadBalancerSourceRanges[0]: "10.0.0.0/33" is not a CIDR`},
		{"unknown scheduler", native("  scheduler: fastest\n  ports: [{port: 80}]\n"), `spec.scheduler: unknown scheduler "fastest"`},
		{"bad affinity", native("  sessionAffinity: {timeoutSeconds: 100000}\n  ports: [{port: 80}]\n"), "spec.sessionAffinity.timeoutSeconds: 100000 is not between 1 and 86400"},
		{"bad traffic policy", native("  externalTrafficPolicy: Nearest\n  ports: [{port: 80}]\n"), `spec.externalTrafficPolicy: "Nearest" is not Cluster or Local`},
		{"health check node port without ETP Local", native("  type: LoadBalancer\n  healthCheckNodePort: 32000\n  ports: [{port: 80}]\n"), "spec.healthCheckNodePort: only LoadBalancer services with externalTrafficPolicy Local"},
		{"two probe kinds", native("  healthCheck: {httpGet: {path: /}, tcpSocket: {port: 80}}\n  ports: [{port: 80}]\n"), "spec.healthCheck: exactly one of httpGet, tcpSocket and exec is required (2 given)"},
		{"bad probe scheme", native("  healthCheck: {httpGet: {scheme: FTP}}\n  ports: [{port: 80}]\n"), `spec.healthCheck.httpGet.scheme: "FTP" is not HTTP or HTTPS`},
		{"negative threshold", native("  healthCheck: {tcpSocket: {}, failureThreshold: -1}\n  ports: [{port: 80}]\n"), "spec.healthCheck.failureThreshold: -1 is negative"},
		{"empty exec", native("  healthCheck: {exec: {command: []}}\n  ports: [{port: 80}]\n"), "spec.healthCheck.exec.command: required"},
		{"bad backend address", native("  ports: [{port: 80}]\n  backends: [{address: 10.1.0}]\n"), `spec.backends[0].address: "10.1.0" is not an IP address`},
		{"backend on unknown node", native("  ports: [{port: 80}]\n  backends: [{address: 10.1.0.5, node: n9}]\n"), `spec.backends[0].node: unknown node "n9"`},
		{"duplicate backend", native("  ports: [{port: 80}]\n  backends: [{address: 10.1.0.5}, {address: 10.1.0.5}]\n"), "spec.backends[1].address: 10.1.0.5 is listed twice"},
		{"bad weight", native("  ports: [{port: 80}]\n  backends: [{address: 10.1.0.5, weight: 70000}]\n"), "spec.backends[0].weight: 70000 is not between 0 and 65535"},
		{"port override on multi-port", native("  ports: [{name: a, port: 80}, {name: b, port: 81}]\n  backends: [{address: 10.1.0.5, port: 9000}]\n"), "spec.backends[0].port: a backend port override needs a single-port service"},
		{"headless with a VIP", native("  headless: true\n  vips: [10.0.0.40]\n"), "spec.vips: a headless service is not proxied, so it has none"},
		{"headless with a health check", native("  headless: true\n  healthCheck: {tcpSocket: {port: 80}}\n"), "spec.healthCheck: a headless service is not proxied"},
		{"headless NodePort", native("  type: NodePort\n  headless: true\n  ports: [{port: 80}]\n"), `spec.headless: only ClusterIP services can be headless (type is "NodePort")`},
		{"bad backend hostname", native("  headless: true\n  backends: [{address: 10.1.0.5, hostname: Db_0}]\n"), `spec.backends[0].hostname: "Db_0": a lowercase RFC 1123 label`},
		{"not-ready addresses of a proxied service", native("  publishNotReadyAddresses: true\n  ports: [{port: 80}]\n"), "spec.publishNotReadyAddresses: only headless services"},
		{"ExternalName without a name", native("  type: ExternalName\n"), "spec.externalName: required"},
		{"ExternalName with backends", native("  type: ExternalName\n  externalName: db.example.com\n  backends: [{address: 10.1.0.5}]\n"), "spec.backends: an ExternalName service has none"},
		{"externalName on ClusterIP", native("  externalName: db.example.com\n  ports: [{port: 80}]\n"), `spec.externalName: only ExternalName services have one (type is "ClusterIP")`},
		{"k8s ExternalName with an external IP", "apiVersion: v1\nkind: Service\nmetadata: {name: ext}\nspec: {type: ExternalName, externalName: example.com, externalIPs: [203.0.113.9]}", "spec.externalIPs: an ExternalName service is not proxied"},
		{"slice with a bad hostname", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: [10.1.0.5], hostname: a.b}]", `endpoints[0].hostname: "a.b": must not contain dots`},
		{"slice with a v6 address in a v4 slice", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [{addresses: ['fd00::1']}]", "endpoints[0].addresses[0]: fd00::1 is not an IPv4 address"},
		{"FQDN slice with an address that is no name", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: FQDN\nendpoints: [{addresses: [Not_A_Name]}]", `endpoints[0].addresses[0]: "Not_A_Name": a lowercase RFC 1123 subdomain`},
		{"unknown address type", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPX\nendpoints: []", `addressType: "IPX" is not IPv4, IPv6 or FQDN`},
		{"slice namespace climbing the store's keys", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, namespace: ../../meta, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: []", `metadata.namespace: "../../meta": a lowercase RFC 1123 label`},
		{"slice namespace in upper case", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, namespace: Default, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: []", `metadata.namespace: "Default": a lowercase RFC 1123 label`},
		{"slice namespace with a NUL", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, namespace: \"a\\0b\", labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: []", `metadata.namespace: "a\x00b": a lowercase RFC 1123 label`},
		{"slice service label not a name", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, labels: {kubernetes.io/service-name: web/x}}\naddressType: IPv4\nendpoints: []", `metadata.labels[kubernetes.io/service-name]: "web/x": a lowercase RFC 1123 label`},
		{"slice with a bad label key", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, labels: {kubernetes.io/service-name: web, -bad: x}}\naddressType: IPv4\nendpoints: []", `metadata.labels: key "-bad": name part must consist of`},
		{"slice over the API server's 1,000 endpoints", "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s1, labels: {kubernetes.io/service-name: web}}\naddressType: IPv4\nendpoints: [" + strings.Repeat("{addresses: [10.1.0.5]},", 1001) + "]", "endpoints: 1001 endpoints; a slice holds at most 1000"},
		{"service with a bad label value", "apiVersion: v1\nkind: Service\nmetadata: {name: lv, labels: {tier: 'a b'}}\nspec: {ports: [{port: 80}]}", `metadata.labels[tier]: "a b": a valid label must be`},
		{"service namespace climbing the store's keys", "apiVersion: v1\nkind: Service\nmetadata: {name: x, namespace: ../x}\nspec: {ports: [{port: 80}]}", `metadata.namespace: "../x": a lowercase RFC 1123 label`},
		{"health check node port past the range", native("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  healthCheckNodePort: 70000\n  ports: [{port: 80}]\n"), "spec.healthCheckNodePort: 70000 is outside the node port range 30000-32767"},
		{"bad node address", "apiVersion: ganglion-proxy.io/v1\nkind: Node\nmetadata: {name: n3}\nspec: {addresses: [localhost]}", `spec.addresses[0]: "localhost" is not an IP address`},
		{"same object twice", native("  ports: [{port: 8081}]\n") + "\n---\n" + native("  ports: [{port: 8082}]\n"), "also defined by test.yaml#2"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { rejects(t, st, DefaultSettings(), c.doc, c.want) })
	}
	if len(cases) < 30 {
		t.Errorf("only %d bad manifests", len(cases))
	}
}

func TestApplyAllocatesAndKeepsAllocationsOnReapply(t *testing.T) {
	st := openStore(t)
	doc := native("  type: LoadBalancer\n  externalTrafficPolicy: Local\n  ports: [{name: http, port: 80}, {name: dns, port: 53, protocol: UDP}]\n")
	if _, err := applyYAML(t, st, doc); err != nil {
		t.Fatal(err)
	}
	first := storedService(t, st, "web")
	if len(first.Spec.VIPs) != 1 || first.Spec.VIPs[0] != "10.96.0.2" {
		t.Errorf("VIPs %v, want the first free address of 10.96.0.0/16", first.Spec.VIPs)
	}
	if first.Spec.Ports[0].NodePort < 30000 || first.Spec.Ports[1].NodePort < 30000 || first.Spec.HealthCheckNodePort < 30000 {
		t.Errorf("node ports not allocated: %+v hc %d", first.Spec.Ports, first.Spec.HealthCheckNodePort)
	}
	if _, err := applyYAML(t, st, doc); err != nil {
		t.Fatal(err)
	}
	again := storedService(t, st, "web")
	if fmt.Sprint(again.Spec) != fmt.Sprint(first.Spec) {
		t.Errorf("re-apply changed allocations:\n%+v\n%+v", first.Spec, again.Spec)
	}
	// A second service gets other addresses and ports.
	if _, err := applyYAML(t, st, strings.Replace(doc, "name: web", "name: api", 1)); err != nil {
		t.Fatal(err)
	}
	other := storedService(t, st, "api")
	if other.Spec.VIPs[0] == first.Spec.VIPs[0] || other.Spec.Ports[0].NodePort == first.Spec.Ports[0].NodePort {
		t.Errorf("second service reuses the first's allocations: %+v", other.Spec)
	}
}

func storedService(t *testing.T, st *store.Store, name string) *Service {
	t.Helper()
	snap, err := st.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range snap.Items {
		if it.Kind == KindService && it.Name == name {
			o, err := DecodeStored(it)
			if err != nil {
				t.Fatal(err)
			}
			return o.Service
		}
	}
	t.Fatalf("service %s not stored", name)
	return nil
}

func TestDeleteIsAllOrNothing(t *testing.T) {
	st := openStore(t)
	if _, err := applyYAML(t, st, base); err != nil {
		t.Fatal(err)
	}
	err := Delete(context.Background(), st, []store.Key{{Kind: KindService, Namespace: "default", Name: "taken"}, {Kind: KindService, Namespace: "default", Name: "ghost"}})
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete with an unknown object: %v", err)
	}
	storedService(t, st, "taken") // still there
}

// TestRequestNamesAreValidatedBeforeTheyBecomeKeys checks that Get and Delete refuse names no
// apply could have stored, naming the field, instead of building store keys from them.
func TestRequestNamesAreValidatedBeforeTheyBecomeKeys(t *testing.T) {
	for _, c := range []struct {
		ref  *v1.ObjectRef
		want string
	}{
		{&v1.ObjectRef{Kind: "svc", Namespace: "../meta", Name: "x"}, "namespace: a lowercase RFC 1123 label"},
		{&v1.ObjectRef{Kind: "svc", Name: "a/b"}, "name: a lowercase RFC 1123 subdomain"},
		{&v1.ObjectRef{Kind: "node", Name: "n\x00"}, "name: a lowercase RFC 1123 subdomain"},
	} {
		_, err := keyOf(c.ref)
		if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want an error containing %q", c.ref, err, c.want)
		}
	}
}

// TestKubernetesRefusalsNameTheKubernetesField checks that a refusal of a Kubernetes Service,
// checked on its native view, names the field as the user wrote it.
func TestKubernetesRefusalsNameTheKubernetesField(t *testing.T) {
	st := openStore(t)
	for _, c := range []struct{ doc, want string }{
		{"apiVersion: v1\nkind: Service\nmetadata: {name: k1}\nspec: {clusterIPs: [10.0.0.300], ports: [{port: 80}]}", `spec.clusterIPs[0]: "10.0.0.300" is not an IP address`},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: k2, annotations: {ganglion-proxy.io/scheduler: fastest}}\nspec: {ports: [{port: 80}]}", `metadata.annotations[ganglion-proxy.io/scheduler]: unknown scheduler "fastest"`},
	} {
		rejects(t, st, DefaultSettings(), c.doc, c.want)
	}
}
