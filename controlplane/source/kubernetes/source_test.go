package kubernetes

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/testwait"
)

func service(name string, labels map[string]string, rv string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: labels, ResourceVersion: rv},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "p", Port: 80, Protocol: corev1.ProtocolTCP}}},
	}
}

func slice(svc, trigger string) *discoveryv1.EndpointSlice {
	port, name, proto, ready := int32(8080), "p", corev1.ProtocolTCP, true
	node := "node-1"
	return &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: svc + "-1", ResourceVersion: "7",
			Labels:      map[string]string{discoveryv1.LabelServiceName: svc},
			Annotations: map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": trigger}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"10.244.1.10"}, NodeName: &node,
			Conditions: discoveryv1.EndpointConditions{Ready: &ready}}},
	}
}

// run starts the source on objs and returns its hub once synced.
func run(t *testing.T, proxyName string, objs ...runtime.Object) (*stream.Hub, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	hub := stream.NewHub(compute.NewEngine(compute.Options{ProxyName: proxyName}), stream.Options{}, stream.NewMetrics(prometheus.NewRegistry()))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	src := &Source{Client: client, ProxyName: proxyName}
	go func() { done <- src.Run(ctx, hub, hub.MarkSynced) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-hub.Synced():
	case <-time.After(30 * time.Second): // a bound against hangs, not a timing assertion
		t.Fatal("source never synced")
	}
	return hub, client
}

func hasService(hub *stream.Hub, name string) bool {
	var ok bool
	hub.View(func(e *compute.Engine) { ok = e.Service(model.ServiceKey{Namespace: "default", Name: name}) != nil })
	return ok
}

func TestSyncedHoldsEveryListedObject(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", ResourceVersion: "3"}}
	hub, _ := run(t, "", service("web", nil, "5"), slice("web", "2026-01-02T03:04:05Z"), node)
	if !hasService(hub, "web") {
		t.Fatal("service listed before sync is missing from the model at sync")
	}
	var nodes []string
	hub.View(func(e *compute.Engine) { nodes = e.Nodes() })
	if len(nodes) != 1 || nodes[0] != "node-1" {
		t.Fatalf("nodes = %v, want [node-1]", nodes)
	}
	if got := hub.Revision(); got < 7 {
		t.Fatalf("revision = %d, want at least the highest resourceVersion listed (7)", got)
	}
}

// Services of other proxies are left out like kube-proxy does; one labelled headless reaches the
// model (headless services' slices carry the label, and a node-local DNS names them) and compute
// leaves it out of the dataplane.
func TestServicesOfOtherProxiesAndHeadlessAreFilteredLikeKubeProxy(t *testing.T) {
	other := service("other", map[string]string{compute.LabelServiceProxyName: "someone-else"}, "1")
	mine := service("mine", map[string]string{compute.LabelServiceProxyName: "ganglion"}, "2")
	headless := service("hl", map[string]string{compute.LabelHeadless: ""}, "3")
	plain := service("plain", nil, "4")

	hub, _ := run(t, "", other, mine, headless, plain)
	for name, want := range map[string]bool{"other": false, "mine": false, "hl": true, "plain": true} {
		if got := hasService(hub, name); got != want {
			t.Errorf("no proxy name: service %s in model = %v, want %v", name, got, want)
		}
	}

	// With a proxy name, services labelled with it must reach compute, which then decides.
	hub, _ = run(t, "ganglion", other, mine, headless, plain)
	for name, want := range map[string]bool{"mine": true, "plain": true, "hl": true} {
		if got := hasService(hub, name); got != want {
			t.Errorf("proxy name ganglion: service %s in model = %v, want %v", name, got, want)
		}
	}
	for _, name := range []string{"other", "hl"} {
		var reason string
		hub.View(func(e *compute.Engine) {
			if s := e.Service(model.ServiceKey{Namespace: "default", Name: name}); s != nil {
				reason = compute.IgnoredReason(s, e.Options())
			}
		})
		if hasService(hub, name) && reason == "" {
			t.Errorf("service %s reached compute and was not ignored", name)
		}
	}
}

func TestChangesAfterSyncReachTheModel(t *testing.T) {
	hub, client := run(t, "")
	ctx := context.Background()
	if _, err := client.CoreV1().Services("default").Create(ctx, service("late", nil, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, "created service in the model", func() bool { return hasService(hub, "late") })
	if err := client.CoreV1().Services("default").Delete(ctx, "late", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testwait.Eventually(t, "deleted service gone from the model", func() bool { return !hasService(hub, "late") })
}

func TestSelector(t *testing.T) {
	if got, want := Selector("").String(), "!service.kubernetes.io/service-proxy-name"; got != want {
		t.Errorf("Selector(\"\") = %q, want %q", got, want)
	}
	if got, want := Selector("ganglion").String(), ""; got != want {
		t.Errorf("Selector(ganglion) = %q, want %q", got, want)
	}
}

func TestTriggerTimeFromAnnotation(t *testing.T) {
	want := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if got := triggerTime(slice("web", want.Format(time.RFC3339Nano))); !got.Equal(want) {
		t.Errorf("triggerTime = %v, want %v", got, want)
	}
	if got := triggerTime(slice("web", "garbage")); !got.IsZero() {
		t.Errorf("triggerTime of a bad annotation = %v, want zero (now)", got)
	}
}
