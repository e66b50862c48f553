package baremetal

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// namedDocs are a native headless service, and a Kubernetes headless service with its slice and
// an ExternalName service as `kubectl get -o yaml` shows them (with the API server's defaults).
const namedDocs = `
apiVersion: ganglion-proxy.io/v1
kind: Service
metadata: {name: db}
spec:
  headless: true
  publishNotReadyAddresses: true
  ports: [{name: sql, port: 5432}]
  backends: [{address: 10.1.0.21, node: n1, hostname: db-0}, {address: 10.1.0.22, node: n2, hostname: db-1, disabled: true}]
---
apiVersion: v1
kind: Service
metadata: {name: cache}
spec: {clusterIP: None, clusterIPs: [None], internalTrafficPolicy: Cluster, sessionAffinity: None, ports: [{name: redis, port: 6379}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: cache-1, labels: {kubernetes.io/service-name: cache, service.kubernetes.io/headless: ""}}
addressType: IPv4
ports: [{name: redis, port: 6380}]
endpoints: [{addresses: [10.1.0.31], hostname: cache-0, nodeName: n1}, {addresses: [10.1.0.32], conditions: {ready: false}}]
---
apiVersion: v1
kind: Service
metadata: {name: ext}
spec: {type: ExternalName, externalName: db.example.com., sessionAffinity: None}
`

// Headless and ExternalName services are stored (no VIP, no node port allocated), come back from
// the store as they went in, and reach the brain as DNS records and nothing else.
func TestHeadlessAndExternalNameServicesRoundTrip(t *testing.T) {
	st := openStore(t)
	if _, err := applyYAML(t, st, base+"---\n"+namedDocs); err != nil {
		t.Fatal(err)
	}
	db, cache, ext := storedService(t, st, "db"), storedService(t, st, "cache"), storedService(t, st, "ext")
	if !db.Spec.Headless || !db.Spec.PublishNotReadyAddresses || len(db.Spec.VIPs) != 0 || db.Spec.Backends[0].Hostname != "db-0" {
		t.Errorf("stored db: %+v, want headless, publishing not-ready, no VIP, backend hostnames", db.Spec)
	}
	if !cache.Spec.Headless || len(cache.Spec.VIPs) != 0 || cache.Spec.InternalTrafficPolicy != "" {
		t.Errorf("stored cache: %+v, want headless with no VIP and no traffic policy", cache.Spec)
	}
	if ext.Spec.Type != "ExternalName" || ext.Spec.ExternalName != "db.example.com." || len(ext.Spec.VIPs) != 0 {
		t.Errorf("stored ext: %+v, want ExternalName db.example.com. with no VIP", ext.Spec)
	}
	// Re-applying keeps them as they are: nothing is inherited or allocated.
	if _, err := applyYAML(t, st, namedDocs); err != nil {
		t.Fatal(err)
	}
	if again := storedService(t, st, "db"); len(again.Spec.VIPs) != 0 {
		t.Errorf("re-applied db got VIPs %v", again.Spec.VIPs)
	}

	hub := stream.NewHub(compute.NewEngine(compute.Options{}), stream.Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Source{Store: st}).Run(ctx, hub, hub.MarkSynced)
	want := map[string]string{
		"db":    "10.1.0.21=db-0 10.1.0.22=db-1 | sql/5432 | ", // the disabled backend too: publishNotReadyAddresses
		"cache": "10.1.0.31=cache-0 | redis/6380 | ",
		"ext":   " |  | db.example.com.",
	}
	for name, w := range want {
		testwait.Eventually(t, "records of "+name, func() bool { return recordsOf(hub, name) == w })
	}
	var ports []string
	hub.View(func(e *compute.Engine) {
		for _, p := range e.Ports("n1") {
			ports = append(ports, p.Base)
		}
	})
	if len(ports) != 1 || ports[0] != "default/taken/v4" {
		t.Errorf("n1's ports = %v, want only the proxied service's", ports)
	}

	// A headless service turning ClusterIP gets a VIP and loses its records.
	clusterIP := strings.Replace(native("  ports: [{name: sql, port: 5432}]\n  backends: [{address: 10.1.0.21, node: n1}]\n"), "name: web", "name: db", 1)
	if _, err := applyYAML(t, st, clusterIP); err != nil {
		t.Fatal(err)
	}
	if got := storedService(t, st, "db"); got.Spec.Headless || len(got.Spec.VIPs) != 1 {
		t.Errorf("db turned ClusterIP: %+v, want a VIP", got.Spec)
	}
	testwait.Eventually(t, "db's records gone", func() bool { return recordsOf(hub, "db") == "" })
}

// recordsOf renders a service's records as "addr=hostname ... | name/port ... | cname".
func recordsOf(hub *stream.Hub, name string) string {
	var rec *v1.DNSRecords
	hub.View(func(e *compute.Engine) { rec = e.Resolve("n1", resname.DNS("default", name)).GetMsg().GetDns() })
	if rec == nil {
		return ""
	}
	var out string
	for i, ep := range rec.Endpoints {
		if i > 0 {
			out += " "
		}
		out += ep.Address + "=" + ep.Hostname
	}
	out += " | "
	for i, p := range rec.Ports {
		if i > 0 {
			out += " "
		}
		out += p.Name + "/" + fmt.Sprint(p.Port)
	}
	return out + " | " + rec.ExternalName
}
