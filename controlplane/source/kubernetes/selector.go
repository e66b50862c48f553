package kubernetes

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
)

// Selector returns the label selector for Services and EndpointSlices. With no proxy name it
// leaves out what belongs to another proxy (service-proxy-name set), as kube-proxy does. Unlike
// kube-proxy it keeps headless services' EndpointSlices (labelled service.kubernetes.io/headless):
// the dataplane never uses them (compute.IgnoredReason: their service is headless, and a service
// carrying the label itself is ignored there too), but a node-local DNS names their endpoints.
// With a proxy name the brain must also see services labelled with that name, and a selector
// cannot say "absent or equal to", so nothing is filtered by the server and
// compute.IgnoredReason leaves services labelled for other proxies alone: the outcome is the
// same, the filter is just applied later.
func Selector(proxyName string) labels.Selector {
	sel := labels.NewSelector()
	if proxyName == "" {
		sel = sel.Add(mustRequirement(compute.LabelServiceProxyName))
	}
	return sel
}

func mustRequirement(label string) labels.Requirement {
	r, err := labels.NewRequirement(label, selection.DoesNotExist, nil)
	if err != nil {
		panic(err) // the labels are constants: an error is a programming mistake
	}
	return *r
}

func tweak(proxyName string) func(*metav1.ListOptions) {
	sel := Selector(proxyName).String()
	return func(o *metav1.ListOptions) { o.LabelSelector = sel }
}
