package nftables

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

func TestObjectNameRoundTrip(t *testing.T) {
	for _, base := range []string{"default/web:http/v4", "ns/svc/v6", "a_b/c d:é/v4", ""} {
		name, err := objectName(kindCluster, base)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range name {
			if !strings.ContainsRune("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789/_.-", c) {
				t.Errorf("%q: name %q has %q, which nft cannot read bare", base, name, c)
			}
		}
		kind, got, ok := parseObjectName(name)
		if !ok || kind != kindCluster || got != base {
			t.Errorf("%q → %q → (%q, %q, %v)", base, name, kind, got, ok)
		}
	}
	if _, err := objectName(kindCluster, strings.Repeat("x", 300)); !errors.Is(err, ErrNameTooLong) {
		t.Errorf("300-byte base: %v, want ErrNameTooLong", err)
	}
	for _, kind := range []string{kindBackend + kindCluster + "0af401051f90", kindAffinity + kindLocal + "fd0000000000000000000000000000011f90", "bcl1", "affcl"} {
		name, err := objectName(kind, "ns/s:p/v6")
		if err != nil {
			t.Fatal(err)
		}
		if got, base, ok := parseObjectName(name); !ok || got != kind || base != "ns/s:p/v6" {
			t.Errorf("%q → %q → (%q, %q, %v)", kind, name, got, base, ok)
		}
	}
	for _, name := range []string{chainServices, setVIPs, bucketOf(3), "x_y", "fw_a", "bclx_a", "affclX1_a", "fwa_a"} {
		if _, _, ok := parseObjectName(name); ok {
			t.Errorf("%q parsed as a port's object", name)
		}
	}
}

func TestSlotsFollowWeights(t *testing.T) {
	b := func(ws ...uint32) []backend {
		var bs []backend
		for _, w := range ws {
			bs = append(bs, backend{weight: w})
		}
		return bs
	}
	cases := []struct {
		name string
		in   []backend
		want []int // slots per backend
	}{
		{"unweighted", b(0, 0, 0), []int{1, 1, 1}},
		{"equal weights reduce", b(5, 5), []int{1, 1}},
		{"proportional", b(1, 3), []int{1, 3}},
		{"zero weight drains", b(0, 2), []int{0, 1}},
		{"scaled to the cap", b(1000, 1), []int{255, 1}},
		{"no backend", nil, []int{}},
	}
	for _, c := range cases {
		got := make([]int, len(c.in))
		for _, i := range slots(c.in) {
			got[i]++
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestEndpointElemsCoverEverySlot(t *testing.T) {
	bs := []backend{
		{addr: netip.MustParseAddr("10.0.0.1"), port: 80, weight: 1},
		{addr: netip.MustParseAddr("10.0.0.2"), port: 81, weight: 2},
		{addr: netip.MustParseAddr("10.0.0.3"), port: 82, weight: 1},
	}
	const id = 7
	es := endpointElems(familyV4, id, bs)
	if len(es) != 6 {
		t.Fatalf("%d elements, want a start and an end per backend", len(es))
	}
	next := uint32(id << slotBits)
	owned := map[string]uint32{}
	for i := 0; i < len(es); i += 2 {
		start, end := binary.BigEndian.Uint32(es[i].Key), binary.BigEndian.Uint32(es[i+1].Key)
		if es[i].IntervalEnd || !es[i+1].IntervalEnd || start != next || end <= start {
			t.Fatalf("interval %d: [%d, %d) after %d", i/2, start, end, next)
		}
		owned[netip.AddrFrom4([4]byte(es[i].Val[:4])).String()] = end - start
		next = end
	}
	if next != (id+1)<<slotBits {
		t.Fatalf("intervals end at %d, want %d", next, (id+1)<<slotBits)
	}
	if owned["10.0.0.2"] != 2*owned["10.0.0.1"] || owned["10.0.0.1"] != owned["10.0.0.3"] {
		t.Fatalf("slots per backend %v, want 1:2:1", owned)
	}
	if es := endpointElems(familyV4, id, nil); len(es) != 0 {
		t.Fatalf("no backends: %d elements", len(es))
	}
}

// renderText renders p and returns each chain as its rules' texts joined by " ; ".
func renderText(t *testing.T, p dataplane.Port) (map[string]string, *portObjects, error) {
	t.Helper()
	cfg := &renderConfig{podCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}, masqBit: 0x4000, rejectBit: 0x8000,
		setID: func(string) (uint32, error) { return 1, nil }}
	o, err := render(cfg, p)
	if err != nil {
		return nil, nil, err
	}
	out := map[string]string{}
	for name, rules := range o.chains {
		var texts []string
		for _, r := range rules {
			texts = append(texts, r.text)
		}
		out[name] = strings.Join(texts, " ; ")
	}
	return out, o, nil
}

// dataText writes a port's data elements as "<set> <key> [: <value>]", sorted.
func dataText(o *portObjects) []string {
	var out []string
	for _, e := range o.data {
		text, _, _ := strings.Cut(nftElem(e), " comment ")
		if _, val, ok := strings.Cut(nftElem(e), " : "); ok {
			text += " : " + val
		}
		out = append(out, e.set()+" "+text)
	}
	slices.Sort(out)
	return out
}

// dataPathCase is a port and the data elements it must render to.
type dataPathCase struct {
	name string
	port dataplane.Port
	want []string
}

func dataPathCases() []dataPathCase {
	const b = "ns/s:p/v4"
	weighted := fwd("10.244.1.5:8080", "10.244.1.6:8080")
	weighted.Backends[0].Weight, weighted.Backends[1].Weight = 1, 2
	return []dataPathCase{
		{
			name: "ClusterIP over the cluster set",
			port: mkPort(b, clusterIP("10.96.0.1", 80), cluster(fwd("10.244.1.5:8080"))),
			want: []string{"fe-ep 10.96.0.1 . tcp . 80 . 0 : 10.244.1.5 . 8080", "fe-k1 10.96.0.1 . tcp . 80"},
		},
		{
			name: "weights become slots",
			port: mkPort(b, clusterIP("10.96.0.1", 80), cluster(weighted)),
			want: []string{
				"fe-ep 10.96.0.1 . tcp . 80 . 0 : 10.244.1.5 . 8080",
				"fe-ep 10.96.0.1 . tcp . 80 . 1 : 10.244.1.6 . 8080",
				"fe-ep 10.96.0.1 . tcp . 80 . 2 : 10.244.1.6 . 8080",
				"fe-k3 10.96.0.1 . tcp . 80",
			},
		},
		{
			name: "ETP Local NodePort: local set unmasqueraded, short-circuit to the cluster set",
			port: mkPort(b, clusterIP("10.96.0.1", 80), nodePort(30000), external(scopeLocal, false),
				cluster(fwd("10.244.2.5:8080")), local(fwd("10.244.1.5:8080"))),
			want: []string{
				"fe-ep 10.96.0.1 . tcp . 80 . 0 : 10.244.2.5 . 8080", "fe-k1 10.96.0.1 . tcp . 80",
				"np-ep tcp . 30000 . 0 : 10.244.1.5 . 8080", "np-k1 tcp . 30000",
				"np-sc-ep tcp . 30000 . 0 : 10.244.2.5 . 8080", "np-sc-k1 tcp . 30000",
			},
		},
		{
			name: "ETP Local with an empty local set drops",
			port: mkPort(b, nodePort(30000), external(scopeLocal, false), cluster(fwd("10.244.2.5:8080")), local(dropSet())),
			want: []string{"np-drop tcp . 30000", "np-sc-ep tcp . 30000 . 0 : 10.244.2.5 . 8080", "np-sc-k1 tcp . 30000"},
		},
		{
			name: "ITP Local with a masquerading internal policy",
			port: func() dataplane.Port {
				p := mkPort(b, clusterIP("10.96.0.1", 80), internal(scopeLocal), local(fwd("10.244.1.5:8080")))
				p.Service.Internal.Masquerade = true
				return p
			}(),
			want: []string{"fe-ep 10.96.0.1 . tcp . 80 . 0 : 10.244.1.5 . 8080", "fe-k1 10.96.0.1 . tcp . 80", "fe-masq 10.96.0.1 . tcp . 80"},
		},
		{
			name: "ETP Cluster external IP masquerades",
			port: mkPort(b, frontend(kindEIP, "192.0.2.1", 80), external(scopeCluster, true), cluster(fwd("10.244.2.5:8080"))),
			want: []string{
				"fe-ep 192.0.2.1 . tcp . 80 . 0 : 10.244.2.5 . 8080", "fe-k1 192.0.2.1 . tcp . 80", "fe-masq 192.0.2.1 . tcp . 80",
				"fe-sc-ep 192.0.2.1 . tcp . 80 . 0 : 10.244.2.5 . 8080", "fe-sc-k1 192.0.2.1 . tcp . 80",
			},
		},
		{
			name: "no endpoints: reject",
			port: mkPort(b, clusterIP("10.96.0.1", 80), cluster(rejectSet())),
			want: []string{"fe-reject 10.96.0.1 . tcp . 80"},
		},
	}
}

func TestRenderDataPath(t *testing.T) {
	cases := dataPathCases()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, o, err := renderText(t, c.port)
			if err != nil {
				t.Fatal(err)
			}
			if len(o.chains) != 0 || len(o.vips) != 0 || len(o.nodeports) != 0 {
				t.Errorf("a data-path port got chains %v, vips %v, nodeports %v", o.chains, o.vips, o.nodeports)
			}
			if got := dataText(o); !slices.Equal(got, c.want) {
				t.Errorf("elements\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.want, "\n  "))
			}
		})
	}
}

// chainPathCase is a port with chains of its own and what they must hold.
type chainPathCase struct {
	name string
	port dataplane.Port
	// want maps chain kinds to substrings their rules' text must contain.
	want map[string][]string
	vips map[string]string // "addr:port" → chain kind
	sets []string          // kinds of the port's named sets
}

func chainPathCases() []chainPathCase {
	const b = "ns/s:p/v4"
	return []chainPathCase{
		{
			name: "LB source ranges",
			port: mkPort(b, frontend(kindLB, "192.0.2.2", 443, "198.51.100.0/24", "2001:db8::/32"), external(scopeCluster, true), cluster(fwd("10.244.2.5:8080"))),
			want: map[string][]string{
				"fw0": {"ip saddr 198.51.100.0/24 goto ext_ns/s.p/v4 ; drop"},
				"ext": {"fib saddr type local meta mark set mark | 0x4000 goto cl_", "ip saddr 10.244.1.0/24 goto cl_", "meta mark set mark | 0x4000 ; goto cl_"},
				"cl":  {"dnat ip to numgen random mod 4096 offset 4096 map @endpoints-01", "meta mark set mark | 0x8000"},
			},
			vips: map[string]string{"192.0.2.2:443": "fw0"},
		},
		{
			name: "affinity: a recording chain per backend",
			port: mkPort(b, clusterIP("10.96.0.1", 80), affinity(30), cluster(fwd("10.244.1.5:8080", "10.244.1.6:8080"))),
			// Backends are named by address and port (10.244.1.5:8080 is 0af401051f90), each
			// with its own timed set of clients.
			want: map[string][]string{
				"cl": {"ip saddr @affcl0af401051f90_ns/s.p/v4 goto bcl0af401051f90_ns/s.p/v4 ; " +
					"ip saddr @affcl0af401061f90_ns/s.p/v4 goto bcl0af401061f90_ns/s.p/v4 ; numgen random mod 2 vmap"},
				"bcl0af401061f90": {"update @affcl0af401061f90_ns/s.p/v4 { ip saddr timeout 30s } dnat ip to 10.244.1.6 . 8080"},
			},
			sets: []string{"affcl0af401051f90", "affcl0af401061f90"},
			vips: map[string]string{"10.96.0.1:80": "cl"},
		},
	}
}

func TestRenderChainPath(t *testing.T) {
	const b = "ns/s:p/v4"
	for _, c := range chainPathCases() {
		t.Run(c.name, func(t *testing.T) {
			chains, o, err := renderText(t, c.port)
			if err != nil {
				t.Fatal(err)
			}
			checkChainPath(t, b, c, chains, o)
		})
	}
}

func checkChainPath(t *testing.T, b string, c chainPathCase, chains map[string]string, o *portObjects) {
	t.Helper()
	for kind, subs := range c.want {
		name, _ := objectName(kind, b)
		text, ok := chains[name]
		if !ok {
			t.Fatalf("no chain %s in %v", name, chains)
		}
		for _, s := range subs {
			if !strings.Contains(text, s) {
				t.Errorf("chain %s: %q lacks %q", name, text, s)
			}
		}
	}
	var sets []string
	for name := range o.sets {
		kind, _, _ := parseObjectName(name)
		sets = append(sets, kind)
	}
	if slices.Sort(sets); !slices.Equal(sets, c.sets) {
		t.Errorf("sets %v, want %v", sets, c.sets)
	}
	if len(o.vips) != len(c.vips) || len(o.data) != 0 {
		t.Fatalf("vips %v data %v, want vips %v", o.vips, o.data, c.vips)
	}
	for k, chain := range o.vips {
		kind, _, _ := parseObjectName(chain)
		if want := c.vips[netip.AddrPortFrom(k.addr, k.port).String()]; kind != want {
			t.Errorf("frontend %v → %s, want kind %s", k, chain, want)
		}
	}
}

func TestRenderRejectsContradictions(t *testing.T) {
	const b = "ns/s:p/v4"
	cases := map[string]dataplane.Port{
		"no service":               {Base: b},
		"policy names a nil set":   mkPort(b, clusterIP("10.96.0.1", 80)),
		"external without policy":  mkPort(b, nodePort(30000), cluster(fwd("10.0.0.1:80"))),
		"frontend of other family": mkPort(b, clusterIP("fd00::1", 80), cluster(fwd("10.0.0.1:80"))),
		"backend of other family":  mkPort(b, clusterIP("10.96.0.1", 80), cluster(fwd("[fd00::1]:80"))),
		"port zero":                mkPort(b, clusterIP("10.96.0.1", 0), cluster(fwd("10.0.0.1:80"))),
	}
	for name, p := range cases {
		if _, _, err := renderText(t, p); !errors.Is(err, ErrInvalidPort) {
			t.Errorf("%s: %v, want ErrInvalidPort", name, err)
		}
	}
}

func TestClassSetNamesRoundTrip(t *testing.T) {
	for _, c := range []classKey{{spaceFE, routeNormal, 1}, {spaceNP, routeShort, 1000}} {
		got, ok := parseClassSet(dataSet(c.space, c.route, classOf(c.k)))
		if !ok || got != c {
			t.Errorf("%v → %v, %v", c, got, ok)
		}
	}
	for _, name := range []string{"fe-ep", "fe-drop", "np-sc-reject", "fe-k", "fe-k0", "fe-kx", setVIPs} {
		if c, ok := parseClassSet(name); ok {
			t.Errorf("%q parsed as class %v", name, c)
		}
	}
}
