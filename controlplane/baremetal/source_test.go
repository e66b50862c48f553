package baremetal

import (
	"context"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"strings"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/store"
)

// summary returns how node sees a port, or "" while it is absent.
func summary(hub *stream.Hub, node, base string) string {
	var out string
	hub.View(func(e *compute.Engine) {
		for _, p := range e.Ports(node) {
			if p.Base == base {
				out = p.Summary()
			}
		}
	})
	return out
}

func waitSummary(t *testing.T, hub *stream.Hub, node, base, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for got := summary(hub, node, base); got != want; got = summary(hub, node, base) {
		if time.Now().After(deadline) {
			t.Fatalf("%s on %s: %q, want %q", base, node, got, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSourceFeedsTheBrainFromTheStore(t *testing.T) {
	st := openStore(t)
	if _, err := applyYAML(t, st, base); err != nil {
		t.Fatal(err)
	}
	hub := stream.NewHub(compute.NewEngine(compute.Options{}), stream.Options{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go (&Source{Store: st}).Run(ctx, hub, hub.MarkSynced)
	select {
	case <-hub.Synced():
	case <-time.After(20 * time.Second):
		t.Fatal("source never synced")
	}
	waitSummary(t, hub, "n2", "default/taken/v4", "internal=cluster FORWARD 10.1.0.1:80 | external=cluster,masq FORWARD 10.1.0.1:80")

	// A native service with backends, a Kubernetes service with its slice.
	if _, err := applyYAML(t, st, native(`  vips: [10.0.0.20]
  externalTrafficPolicy: Local
  type: NodePort
  ports: [{port: 80, targetPort: 8080, nodePort: 30090}]
  healthCheck: {httpGet: {path: /ready}}
  backends: [{address: 10.1.0.5, node: n1, weight: 3}, {address: 10.1.0.6, node: n2}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec: {clusterIP: 10.0.0.30, ports: [{name: grpc, port: 9000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: api-1, labels: {kubernetes.io/service-name: api}}
addressType: IPv4
ports: [{name: grpc, port: 9001}]
endpoints: [{addresses: [10.1.0.9], nodeName: n2}]
`)); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, hub, "n1", "default/web/v4", "internal=cluster FORWARD 10.1.0.5:8080*3 10.1.0.6:8080 | external=local FORWARD 10.1.0.5:8080*3")
	waitSummary(t, hub, "n1", "default/api:grpc/v4", "internal=cluster FORWARD 10.1.0.9:9001")

	// A failing health check takes a backend out everywhere; passing again brings it back.
	session, err := st.GrantLease(ctx, leasePrefix+"n1", []byte("{}"), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := RecordHealth(ctx, session, "default", "web", "10.1.0.5", "n1", false, "HTTP 503"); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, hub, "n2", "default/web/v4", "internal=cluster FORWARD 10.1.0.6:8080 | external=local FORWARD 10.1.0.6:8080")
	waitSummary(t, hub, "n1", "default/web/v4", "internal=cluster FORWARD 10.1.0.6:8080 | external=local DROP")
	// describe names the failing check and the agent's last result.
	var why string
	hub.View(func(e *compute.Engine) {
		ex, err := e.Explain("n2", model.ServiceKey{Namespace: "default", Name: "web"})
		for _, p := range ex {
			for _, ep := range p.Endpoints {
				if ep.Address == "10.1.0.5" {
					why = ep.Reason
				}
			}
		}
		if err != nil {
			t.Error(err)
		}
	})
	if !strings.HasPrefix(why, "not ready: httpGet HTTP /ready failing its health check on n1 since ") || !strings.HasSuffix(why, ": HTTP 503") {
		t.Errorf("explanation of the failing backend: %q", why)
	}
	if err := RecordHealth(ctx, session, "default", "web", "10.1.0.5", "n1", true, ""); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, hub, "n1", "default/web/v4", "internal=cluster FORWARD 10.1.0.5:8080*3 10.1.0.6:8080 | external=local FORWARD 10.1.0.5:8080*3")

	if err := Delete(ctx, st, []store.Key{{Kind: KindService, Namespace: "default", Name: "web"}}); err != nil {
		t.Fatal(err)
	}
	waitSummary(t, hub, "n1", "default/web/v4", "")
}
