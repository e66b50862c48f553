package kubernetes

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Headless and ExternalName services, and a headless service's slices (which the EndpointSlice
// controller labels headless), reach the model as records for DNS and as nothing for the
// dataplane.
func TestHeadlessAndExternalNameServicesAreNamedNotProxied(t *testing.T) {
	db := service("db", nil, "1")
	db.Spec.ClusterIP, db.Spec.ClusterIPs = corev1.ClusterIPNone, nil
	db.Spec.PublishNotReadyAddresses = true
	dbSlice := slice("db", "")
	dbSlice.Labels[compute.LabelHeadless] = ""
	host := "db-0"
	dbSlice.Endpoints[0].Hostname = &host
	notReady := false
	dbSlice.Endpoints = append(dbSlice.Endpoints, discoveryv1.Endpoint{Addresses: []string{"10.244.1.11"},
		Conditions: discoveryv1.EndpointConditions{Ready: &notReady}})
	ext := service("ext", nil, "2")
	ext.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}

	hub, _ := run(t, "", db, dbSlice, ext)
	var dbRec, extRec *v1.DNSRecords
	var dataplane int
	hub.View(func(e *compute.Engine) {
		dbRec = e.Resolve("node-1", resname.DNS("default", "db")).GetMsg().GetDns()
		extRec = e.Resolve("node-1", resname.DNS("default", "ext")).GetMsg().GetDns()
		dataplane = len(e.NodeState("node-1"))
	})
	// publishNotReadyAddresses: the not-ready endpoint is named too.
	if eps := dbRec.GetEndpoints(); len(eps) != 2 || eps[0].Address != "10.244.1.10" || eps[0].Hostname != "db-0" || eps[1].Address != "10.244.1.11" {
		t.Errorf("headless service's records name %v, want 10.244.1.10 as db-0 and 10.244.1.11", eps)
	}
	if extRec.GetExternalName() != "db.example.com" {
		t.Errorf("ExternalName service's records = %v, want a CNAME to db.example.com", extRec)
	}
	if dataplane != 0 {
		t.Errorf("node-1 holds %d dataplane resources, want none: neither service is proxied", dataplane)
	}
}
