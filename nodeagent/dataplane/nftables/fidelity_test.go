package nftables

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// TestFakeReadsBackAsTheKernel applies the same changes to a real namespace and to the fake and
// compares what each reads back: the fake the script tests trust must hold what the kernel holds,
// as far as Reconcile and a restart can tell.
func TestFakeReadsBackAsTheKernel(t *testing.T) {
	real, _ := nsDataplane(t)
	fake, err := New(benchNode(), WithFake(NewFake()))
	if err != nil {
		t.Fatal(err)
	}
	steps := []dataplane.Change{
		{Upserts: fidelityPorts()},
		// A backend leaves the affinity port (its chain and set go), a port goes.
		{Upserts: []dataplane.Port{mkPort("default/sticky:http/v4", clusterIP("10.96.0.12", 80), affinity(60),
			cluster(fwd("10.244.1.11:8080")))}, Removals: []string{"default/web:http/v4"}},
	}
	for i, c := range steps {
		for _, d := range []*Dataplane{real, fake} {
			if errs := d.Apply(context.Background(), c); errs != nil {
				t.Fatalf("step %d: %v", i, errs)
			}
		}
		for _, f := range families {
			want, got := readText(t, real.k, f), readText(t, fake.k, f)
			if got != want {
				t.Fatalf("step %d, %s: the fake reads back\n%s\nthe kernel\n%s", i, f.word, got, want)
			}
		}
	}
}

// fidelityPorts covers the data path, chains of their own, UDP and IPv6.
func fidelityPorts() []dataplane.Port {
	return []dataplane.Port{
		mkPort("default/web:http/v4", clusterIP("10.96.0.10", 80), cluster(fwd("10.244.1.10:8080", "10.244.1.11:8080"))),
		mkPort("default/np:http/v4", clusterIP("10.96.0.11", 80), nodePort(30080), external(scopeLocal, false),
			cluster(fwd("10.244.2.10:8080")), local(dropSet())),
		mkPort("default/sticky:http/v4", clusterIP("10.96.0.12", 80), affinity(60), cluster(fwd("10.244.1.10:8080", "10.244.1.11:8080"))),
		mkPort("default/lb:https/v4", frontend(kindLB, "192.0.2.2", 443, "198.51.100.0/24"), external(scopeCluster, true),
			cluster(fwd("10.244.2.10:8443"))),
		mkPort("kube-system/dns:dns/v4", udp(), clusterIP("10.96.0.53", 53), cluster(fwd("10.244.1.53:53"))),
		mkPort("default/web:http/v6", clusterIP("fd00:96::10", 80), cluster(fwd("[fd00:244:1::10]:8080"))),
	}
}

// readText reads a family's table back and writes it canonically, endpoint elements sorted.
func readText(t *testing.T, r tableReader, f *family) string {
	t.Helper()
	k, err := readState(r, f)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "chains %v\nsets %v\nnames %v\nids %v\nclasses %v\n", k.chains, k.sets, k.setNames, k.ids, k.classes)
	fmt.Fprintf(&b, "vips %v\nnodeports %v\ncluster-ips %v\nhairpin %v\nnp-addrs %v\n", k.vips, k.nodeports, k.clusterIPs, k.hairpin, k.npAddrs)
	for _, id := range slices.SortedFunc(maps.Keys(k.data), func(a, b dataID) int {
		return cmp.Or(strings.Compare(a.set.name(), b.set.name()), compareDataID(a, b))
	}) {
		e := k.data[id]
		fmt.Fprintf(&b, "data %q %x %x %q\n", id.set.name(), id.key.bytes(), e.val.bytes(), e.owner)
	}
	for id, elems := range k.ep {
		var keys []string
		for _, e := range elems {
			keys = append(keys, elemKey(e))
		}
		slices.Sort(keys)
		fmt.Fprintf(&b, "ep %d %v\n", id, keys)
	}
	return b.String()
}
