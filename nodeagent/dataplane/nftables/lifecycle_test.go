package nftables

import (
	"context"
	"regexp"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func webPort(backends ...string) dataplane.Port {
	return mkPort("default/web:http/v4", clusterIP("10.96.0.10", 80), cluster(fwd(backends...)))
}

func TestReconcileRepairsOutsideChanges(t *testing.T) {
	l := newLab(t, 2)
	d := l.dataplane(t)
	apply(t, d, webPort(ep(podIP(1))),
		mkPort("default/np:http/v4", clusterIP("10.96.0.11", 80), nodePort(30080), external(scopeCluster, true), cluster(fwd(ep(podIP(1))))),
		mkPort("default/sticky:http/v4", clusterIP("10.96.0.12", 80), affinity(60), cluster(fwd(ep(podIP(1))))))
	works := func(when string) {
		t.Helper()
		if g, err := l.pods[1].AskTCP("10.96.0.10:80"); err != nil || netlab.Backend(g) != "pod1" {
			t.Fatalf("%s: ClusterIP gave %q, %v", when, g, err)
		}
		if g, err := l.client.AskTCP(hostPort(nodeIP, 30080)); err != nil || netlab.Backend(g) != "pod1" {
			t.Fatalf("%s: NodePort gave %q, %v", when, g, err)
		}
		if g, err := l.pods[1].AskTCP("10.96.0.12:80"); err != nil || netlab.Backend(g) != "pod1" {
			t.Fatalf("%s: a port with chains of its own gave %q, %v", when, g, err)
		}
	}
	works("before")
	cases := outsideChanges()
	for _, c := range cases {
		for _, cmd := range c.breaks {
			l.node.Run(t, cmd...)
		}
		if err := d.Reconcile(context.Background()); err != nil {
			t.Fatalf("%s: Reconcile: %v", c.name, err)
		}
		works("after Reconcile repaired: " + c.name)
		if out := l.node.Run(t, "nft", "list", "table", "ip", TableName); strings.Contains(out, "10.96.0.99") {
			t.Fatalf("%s: an element added by hand survived Reconcile:\n%s", c.name, out)
		}
	}
	// Reconcile of a table that matches changes nothing (affinity entries age meanwhile).
	expires := regexp.MustCompile(`expires \S+`)
	list := func() string {
		return expires.ReplaceAllString(l.node.Run(t, "nft", "-a", "list", "table", "ip", TableName), "")
	}
	before := list()
	if err := d.Reconcile(context.Background()); err != nil {
		t.Fatal(err)
	}
	if after := list(); after != before {
		t.Fatalf("Reconcile of an intact table rewrote it:\n%s\nbecame\n%s", before, after)
	}
}

// outsideChange is a change made by hand to the table: the nft commands that make it.
type outsideChange struct {
	name   string
	breaks [][]string
}

func outsideChanges() []outsideChange {
	return []outsideChange{
		{"class element deleted", [][]string{{"nft", "delete", "element", "ip", TableName, "fe-k1", "{ 10.96.0.10 . tcp . 80 }"}}},
		{"endpoint element deleted", [][]string{{"nft", "delete", "element", "ip", TableName, "np-ep", "{ tcp . 30080 . 0x00000000 }"}}},
		{"shared chain flushed", [][]string{{"nft", "flush", "chain", "ip", TableName, "pick-fe-k1"}}},
		{"services chain flushed", [][]string{{"nft", "flush", "chain", "ip", TableName, chainServices}}},
		{"port chain flushed", [][]string{{"nft", "flush", "chain", "ip", TableName, "cl_default/sticky.http/v4"}}},
		{"port chain deleted", [][]string{
			{"nft", "delete", "element", "ip", TableName, setVIPs, "{ 10.96.0.12 . tcp . 80 }"},
			{"nft", "flush", "chain", "ip", TableName, "cl_default/sticky.http/v4"},
			{"nft", "delete", "chain", "ip", TableName, "cl_default/sticky.http/v4"}}},
		{"base chain deleted", [][]string{{"nft", "delete", "chain", "ip", TableName, chainNatPrerouting}}},
		{"table deleted", [][]string{{"nft", "delete", "table", "ip", TableName}}},
		{"foreign elements added", [][]string{
			{"nft", "add", "element", "ip", TableName, setVIPs, "{ 10.96.0.99 . tcp . 80 : goto cl_default/sticky.http/v4 }"},
			{"nft", "add", "element", "ip", TableName, "fe-k1", "{ 10.96.0.99 . tcp . 81 }"}}},
	}
}

func TestRestartKeepsConnectionsAndPrunesLeftovers(t *testing.T) {
	l := newLab(t, 3)
	d := l.dataplane(t)
	web := webPort(ep(podIP(1)), ep(podIP(2)))
	old := mkPort("default/old:http/v4", clusterIP("10.96.0.20", 80), affinity(30), cluster(fwd(ep(podIP(1)))))
	apply(t, d, web, old)

	conn, err := l.pods[2].Dial("10.96.0.10:80")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// Serve answers every line with the greeting: the same backend, seeing the same source.
	echo := func(when string) {
		t.Helper()
		if line, err := conn.Ask(); err != nil || line != conn.Greeting {
			t.Fatalf("%s: long-lived connection answered %q, %v; want %q", when, line, err, conn.Greeting)
		}
	}
	echo("before restart")

	handles := l.node.Run(t, "nft", "-a", "list", "table", "ip", TableName)
	d.Close()
	d2 := l.dataplane(t)
	if got := l.node.Run(t, "nft", "-a", "list", "table", "ip", TableName); got != handles {
		t.Fatalf("opening a new instance changed the table:\n%s\nbecame\n%s", handles, got)
	}
	echo("after a new instance opened")
	if g := mustAsk(t, l.pods[2], "10.96.0.10:80"); !strings.HasPrefix(g, "pod") {
		t.Fatalf("new connection before re-apply: %q", g)
	}
	apply(t, d2, web)
	if d2.lastMessages != 0 {
		t.Fatalf("re-applying what the table holds sent %d messages, want none", d2.lastMessages)
	}
	if got := l.node.Run(t, "nft", "-a", "list", "table", "ip", TableName); got != handles {
		t.Fatalf("re-applying the same port rewrote the table:\n%s\nbecame\n%s", handles, got)
	}
	if err := d2.Prune(context.Background(), map[string]bool{web.Base: true}); err != nil {
		t.Fatal(err)
	}
	echo("after re-apply and prune")
	out := l.node.Run(t, "nft", "list", "table", "ip", TableName)
	if strings.Contains(out, "default/old") || strings.Contains(out, "10.96.0.20") {
		t.Fatalf("Prune left the earlier run's port:\n%s", out)
	}
	if _, err := l.pods[2].AskTCP("10.96.0.20:80"); err == nil {
		t.Fatal("the pruned port still answers")
	}
}

func TestApplyTouchesOnlyWhatChanged(t *testing.T) {
	l := newLab(t, 2)
	d := l.dataplane(t)
	other := mkPort("default/other:http/v4", clusterIP("10.96.0.30", 80), cluster(fwd(ep(podIP(2)))))
	apply(t, d, webPort(ep(podIP(1))), other)
	before := chainHandles(l.node.Run(t, "nft", "-a", "list", "table", "ip", TableName))
	apply(t, d, webPort(ep(podIP(2))))
	after := chainHandles(l.node.Run(t, "nft", "-a", "list", "table", "ip", TableName))
	// An endpoint change is a change of map elements: no rule anywhere is rewritten.
	for chain, h := range before {
		if after[chain] != h {
			t.Errorf("chain %s: rules %q became %q", chain, h, after[chain])
		}
	}
	if g := mustAsk(t, l.pods[0], "10.96.0.10:80"); netlab.Backend(g) != "pod2" {
		t.Fatalf("after the endpoint change: %q", g)
	}
	if errs := d.Apply(context.Background(), dataplane.Change{Removals: []string{"default/web:http/v4"}}); errs != nil {
		t.Fatal(errs)
	}
	if out := l.node.Run(t, "nft", "list", "table", "ip", TableName); strings.Contains(out, "web") {
		t.Fatalf("removed port left objects:\n%s", out)
	}
	if g := mustAsk(t, l.pods[0], "10.96.0.30:80"); netlab.Backend(g) != "pod2" {
		t.Fatalf("the other port after a removal: %q", g)
	}
}

// chainHandles maps each chain of `nft -a list` output to its rules' handles.
func chainHandles(out string) map[string]string {
	m := map[string]string{}
	chain := ""
	re := regexp.MustCompile(`# handle (\d+)`)
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "chain" {
			chain = f[1]
			continue
		}
		if chain != "" && strings.Contains(line, "comment") {
			if mm := re.FindStringSubmatch(line); mm != nil {
				m[chain] += mm[1] + " "
			}
		}
	}
	return m
}

func TestApplyIsolatesABadPort(t *testing.T) {
	l := newLab(t, 1)
	d := l.dataplane(t)
	bad := mkPort("default/bad:http/v4", clusterIP("10.96.0.40", 80), cluster(fwd("[fd00::1]:80")))
	bad.Service.Family = v1.IPFamily_IP_FAMILY_IPV4
	errs := d.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{webPort(ep(podIP(1))), bad}})
	if len(errs) != 1 || errs[bad.Base] == nil {
		t.Fatalf("errors %v, want exactly one for %s", errs, bad.Base)
	}
	if g := mustAsk(t, l.pods[0], "10.96.0.10:80"); netlab.Backend(g) != "pod1" {
		t.Fatalf("the good port: %q", g)
	}
}

func TestUDPBackendLeavingClearsConntrack(t *testing.T) {
	l := newLab(t, 3)
	d := l.dataplane(t)
	dns := func(backend string) dataplane.Port {
		return mkPort("default/dns:udp/v4", udp(), clusterIP("10.96.0.18", 53), cluster(fwd(ep(backend))))
	}
	apply(t, d, dns(podIP(1)))
	conn, err := l.pods[2].DialNet("udp", "10.96.0.18:53", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if g, err := netlab.UDPRoundTrip(conn); err != nil || netlab.Backend(g) != "pod1" {
		t.Fatalf("first datagram: %q %v", g, err)
	}
	apply(t, d, dns(podIP(2)))
	// The same socket keeps its 5-tuple: only a deleted conntrack entry lets it reach pod2.
	if g, err := netlab.UDPRoundTrip(conn); err != nil || netlab.Backend(g) != "pod2" {
		t.Fatalf("after pod1 left: %q %v, want pod2", g, err)
	}
}

func TestPortMovesBetweenChainsAndDataPath(t *testing.T) {
	l := newLab(t, 2)
	d := l.dataplane(t)
	sticky := mkPort("default/web:http/v4", clusterIP("10.96.0.10", 80), affinity(60), cluster(fwd(ep(podIP(1)))))
	plain := webPort(ep(podIP(1)))
	for i, p := range []dataplane.Port{sticky, plain, sticky, plain} {
		apply(t, d, p)
		if g := mustAsk(t, l.pods[1], "10.96.0.10:80"); netlab.Backend(g) != "pod1" {
			t.Fatalf("step %d: %q", i, g)
		}
		out := l.node.Run(t, "nft", "list", "table", "ip", TableName)
		hasChains := strings.Contains(out, "cl_default/web.http/v4")
		hasData := strings.Contains(out, `comment "default/web:http/v4"`)
		if hasChains != (p.Service.SessionAffinity != nil) || hasData == hasChains {
			t.Fatalf("step %d: chains %v, data elements %v:\n%s", i, hasChains, hasData, out)
		}
	}
}
