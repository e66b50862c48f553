package nftables

import (
	"context"
	"encoding/binary"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// Scale of the benchmark, per the issue: 10,000 services with 10 endpoints each.
const (
	benchServices  = 10000
	benchEndpoints = 10
	benchSmall     = 100
	benchTiny      = 10
	benchSamples   = 31
	benchConnects  = 301
)

// benchPort is service i: a ClusterIP and a NodePort over 10 endpoints. Service 0 forwards to the
// lab's pod1, so connections through it are real.
func benchPort(i int, shift int) dataplane.Port {
	base := fmt.Sprintf("bench/svc-%d:http/v4", i)
	vip := netip.AddrFrom4([4]byte{10, 96 + byte(i>>16), byte(i >> 8), byte(i)})
	var eps []string
	if i == 0 {
		eps = []string{ep(podIP(1))}
	} else {
		for j := range benchEndpoints {
			a := netip.AddrFrom4([4]byte{10, 128 + byte(i>>16), byte(i >> 8), byte(i)})
			eps = append(eps, netip.AddrPortFrom(a, uint16(8000+j+shift)).String())
		}
	}
	return mkPort(base, clusterIP(vip.String(), 80), nodePort(uint32(30000+i%2000)+uint32(i/2000)*0),
		external(scopeCluster, true), cluster(fwd(eps...)))
}

func benchPorts(n int) []dataplane.Port {
	ps := make([]dataplane.Port, n)
	for i := range ps {
		ps[i] = benchPort(i, 0)
		if i >= 2000 { // NodePorts are scarce: only the first 2,000 services get one
			ps[i].Service.Frontends = ps[i].Service.Frontends[:1]
			ps[i].Service.External = nil
		}
	}
	return ps
}

// medianApplyOneChange applies an endpoint change of one service, alternately, and returns the
// median time of Apply.
func medianApplyOneChange(b *testing.B, d *Dataplane, n int) time.Duration {
	// A service of the same shape (ClusterIP and NodePort) in both tables.
	i := min(n/2, 1999)
	var ds []time.Duration
	for k := range benchSamples {
		p := benchPort(i, (k+1)%2) // installed with shift 0: every sample changes it
		if i >= 2000 {
			p.Service.Frontends = p.Service.Frontends[:1]
			p.Service.External = nil
		}
		start := time.Now()
		if errs := d.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{p}}); errs != nil {
			b.Fatal(errs)
		}
		ds = append(ds, time.Since(start))
		if d.lastMessages == 0 {
			b.Fatalf("sample %d changed nothing", k)
		}
	}
	b.Logf("n=%d: %d messages per change", n, d.lastMessages)
	return median(ds)
}

// medianConnect times TCP connects from a pod to service 0's ClusterIP.
func medianConnect(b *testing.B, l *lab) time.Duration {
	var ds []time.Duration
	for range benchConnects {
		var c net.Conn
		var took time.Duration
		if err := l.pods[1].Do(func() error {
			start := time.Now()
			var err error
			c, err = net.DialTimeout("tcp", "10.96.0.0:80", netlab.DialTimeout)
			took = time.Since(start)
			return err
		}); err != nil {
			b.Fatal(err)
		}
		c.Close()
		ds = append(ds, took)
	}
	return median(ds)
}

func median(ds []time.Duration) time.Duration {
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// BenchmarkNFT prints the BENCH line. Run it with -benchtime 1x: one iteration builds
// three namespaces, so repeated iterations would only repeat the same measurement.
func BenchmarkNFT(b *testing.B) {
	for range b.N {
		benchNFT(b)
	}
}

func benchNFT(b *testing.B) {
	// Small: 10 services for the first-packet baseline, then 100 for the apply baseline.
	small := newLab(b, 2)
	ds := small.dataplane(b)
	apply(b, ds, benchPorts(benchTiny)...)
	connectTiny := medianConnect(b, small)
	apply(b, ds, benchPorts(benchSmall)...)
	apply100 := medianApplyOneChange(b, ds, benchSmall)

	// Big: a full sync of 10,000 services into an empty table, then the same measurements.
	big := newLab(b, 2)
	db := big.dataplane(b)
	ports := benchPorts(benchServices)
	start := time.Now()
	apply(b, db, ports...)
	fullSync := time.Since(start)
	apply10k := medianApplyOneChange(b, db, benchServices)
	connectBig := medianConnect(b, big)

	// The same ruleset through nft -f, into a fresh namespace.
	nftTime := nftLoad(b, ports)

	fmt.Printf("BENCH nft apply_ratio=%.2f fullsync_vs_nft=%.2f firstpacket_ratio=%.2f apply100_ms=%.3f apply10k_ms=%.3f fullsync_ms=%.0f nft_f_ms=%.0f connect10_us=%.0f connect10k_us=%.0f\n",
		float64(apply10k)/float64(apply100), float64(fullSync)/float64(nftTime), float64(connectBig)/float64(connectTiny),
		ms(apply100), ms(apply10k), ms(fullSync), ms(nftTime),
		float64(connectTiny.Nanoseconds())/1000, float64(connectBig.Nanoseconds())/1000)
}

// nftLoad writes the ruleset our renderer makes for ports as an nft script and times nft -f.
func nftLoad(b *testing.B, ports []dataplane.Port) time.Duration {
	n := netlab.NewNS(b, "gn"+netlab.UniqueID()+"-nft")
	script, err := nftScript(ports)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "ruleset.nft")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	out, err := exec.Command("ip", "netns", "exec", n.Name, "nft", "-f", path).CombinedOutput()
	took := time.Since(start)
	if err != nil {
		b.Fatalf("nft -f: %v\n%.2000s", err, out)
	}
	return took
}

// nftScript renders the IPv4 table for ports in nft syntax from the same objects Apply sends:
// the skeleton, the forwarding classes in use, and the data path's elements.
func nftScript(ports []dataplane.Port) (string, error) {
	info := dataplane.Node{Addresses: []netip.Addr{netip.MustParseAddr(nodeIP)},
		PodCIDRs: []netip.Prefix{netip.MustParsePrefix("10.244.1.0/24")}}
	cfg := &renderConfig{podCIDRs: info.PodCIDRs, masqBit: DefaultMasqueradeBit, rejectBit: DefaultRejectBit,
		setID: func(string) (uint32, error) { return 0, fmt.Errorf("chain-path port in the benchmark") }}
	skel, err := newSkeleton(familyV4, cfg, info.NodePortAddrs(false))
	if err != nil {
		return "", err
	}
	classes := map[classKey]bool{}
	var data []dataElem
	clusterIPs, pairs := map[netip.Addr]bool{}, map[netip.Addr]bool{}
	for _, p := range ports {
		o, err := render(cfg, p)
		if err != nil {
			return "", err
		}
		maps.Copy(classes, o.classes)
		for _, e := range o.data {
			data = append(data, e)
		}
		for _, a := range o.clusterIPs {
			clusterIPs[a] = true
		}
		for _, a := range o.hairpin {
			pairs[a] = true
		}
	}
	var s strings.Builder
	fmt.Fprintf(&s, "table ip %s {\n", TableName)
	for _, set := range skel.sets {
		fmt.Fprintf(&s, "%s %s { %s; }\n", kindWord(set), set.Name, nftTypeOf(set.Name))
	}
	for c := range classes {
		fmt.Fprintf(&s, "set %s { %s; }\n", dataSet(c.space, c.route, classOf(c.k)), nftTypeOf(dataSet(c.space, c.route, "x")))
	}
	for c := range classes {
		// nft wants a protocol match before a port mapping; the kernel does not.
		fmt.Fprintf(&s, "chain %s {\nmeta l4proto { tcp, udp, sctp } %s\n}\n", pickChain(c), pickRule(familyV4, c).text)
	}
	for _, c := range skel.chains {
		fmt.Fprintf(&s, "chain %s {\n", c.name)
		if c.hook != nil {
			hooks := map[string]string{chainNatPrerouting: "nat hook prerouting priority -100", chainNatOutput: "nat hook output priority -100",
				chainNatPostrouting: "nat hook postrouting priority 100", chainFilterInput: "filter hook input priority 0",
				chainFilterForward: "filter hook forward priority 0", chainFilterOutput: "filter hook output priority -90"}
			fmt.Fprintf(&s, "type %s;\n", hooks[c.name])
		}
		rules := c.rules
		if c.name == chainServices {
			rules = servicesRules(familyV4, cfg, classes)
		}
		for _, r := range rules {
			fmt.Fprintf(&s, "%s\n", r.text)
		}
		s.WriteString("}\n")
	}
	s.WriteString("}\n")
	for _, e := range data {
		fmt.Fprintf(&s, "add element ip %s %s { %s }\n", TableName, e.set, nftElem(e))
	}
	for a := range clusterIPs {
		fmt.Fprintf(&s, "add element ip %s %s { %s }\n", TableName, setClusterIPs, a)
	}
	for a := range pairs {
		fmt.Fprintf(&s, "add element ip %s %s { %s . %s }\n", TableName, setHairpin, a, a)
	}
	fmt.Fprintf(&s, "add element ip %s %s { %s }\n", TableName, setNodePortAddrs, nodeIP)
	return s.String(), nil
}

func kindWord(s *nftables.Set) string {
	if s.IsMap {
		return "map"
	}
	return "set"
}

// nftTypeOf is the nft declaration of a skeleton set's type (IPv4).
func nftTypeOf(name string) string {
	const fe, np = "ipv4_addr . inet_proto . inet_service", "inet_proto . inet_service"
	switch {
	case name == setVIPs:
		return "type " + fe + " : verdict"
	case name == setNodePorts:
		return "type " + np + " : verdict"
	case name == setNodePortAddrs, name == setClusterIPs:
		return "type ipv4_addr"
	case name == setHairpin:
		return "type ipv4_addr . ipv4_addr"
	case strings.HasPrefix(name, setEndpoints):
		return fmt.Sprintf("typeof numgen random mod %d : ip daddr . tcp dport; flags interval", slotCount)
	case strings.HasPrefix(name, spaceFE) && strings.HasSuffix(name, "-ep"):
		return "typeof ip daddr . meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport"
	case strings.HasSuffix(name, "-ep"):
		return "typeof meta l4proto . th dport . numgen random mod 1 : ip daddr . th dport"
	case strings.HasPrefix(name, spaceFE):
		return "type " + fe
	}
	return "type " + np
}

// nftElem writes a data element as nft reads it (IPv4).
func nftElem(e dataElem) string {
	k := e.key
	var parts []string
	if strings.HasPrefix(e.set, spaceFE) {
		a, _ := netip.AddrFromSlice(k[:4])
		parts, k = append(parts, a.String()), k[4:]
	}
	parts = append(parts, dataplane.IPProtoName(k[0]), fmt.Sprint(binary.BigEndian.Uint16(k[4:6])))
	if len(k) > 8 {
		parts = append(parts, fmt.Sprint(binary.NativeEndian.Uint32(k[8:12])))
	}
	out := strings.Join(parts, " . ") + fmt.Sprintf(" comment %q", e.owner)
	if e.val != nil {
		a, _ := netip.AddrFromSlice(e.val[:4])
		out += fmt.Sprintf(" : %s . %d", a, binary.BigEndian.Uint16(e.val[4:6]))
	}
	return out
}
