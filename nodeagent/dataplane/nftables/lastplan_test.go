package nftables

import (
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// TestLastPlanIsWhatTheKernelAccepted checks what the agent's /debug/plan shows: the last plan
// committed, in nft syntax, naming the change's element; a change that plans nothing keeps it.
func TestLastPlanIsWhatTheKernelAccepted(t *testing.T) {
	d, err := New(dataplane.Node{Name: "n1", Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}, WithFake(NewFake()))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if !strings.HasPrefix(d.LastPlan(), "add table ip ganglion\n") {
		t.Fatalf("the skeleton New committed is not the last plan:\n%.200s", d.LastPlan())
	}
	p := mkPort("default/web:http/v4", clusterIP("10.96.0.10", 80), cluster(fwd("10.1.0.1:8080")))
	if errs := d.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{p}}); errs != nil {
		t.Fatal(errs)
	}
	first := d.LastPlan()
	if !strings.Contains(first, "10.96.0.10") || !strings.Contains(first, "10.1.0.1") {
		t.Errorf("last plan does not name the service's VIP and endpoint:\n%s", first)
	}
	if errs := d.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{p}}); errs != nil {
		t.Fatal(errs)
	}
	if d.LastPlan() != first {
		t.Errorf("an apply that changed nothing replaced the last plan:\n%s", d.LastPlan())
	}
}
