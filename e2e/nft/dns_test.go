package nft

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

const (
	// dnsAddr is the agent's default DNS address, on its own dummy device in every node.
	dnsAddr = "169.254.20.10"
	// upstreamAddr is a tiny resolver on the outside client: the agents' upstream.
	upstreamAddr = clientIP + ":53"
	// outsideIP is what the upstream answers for outside.test.
	outsideIP = "192.0.2.77"
)

// dnsExtra are the services the DNS cases add to the lab's: a headless service with a named
// endpoint, one with 100 endpoints (too large for 512 bytes of UDP), an ExternalName service and a
// dual-stack one.
func dnsExtra() string {
	var big strings.Builder
	for k := range 100 {
		fmt.Fprintf(&big, "- {addresses: [%s], nodeName: node-1, conditions: {ready: true}}\n", podIP(1, k))
	}
	return headlessYAML("db", "pg", 5432, "- {addresses: ["+podIP(1, 0)+"], hostname: db-0, nodeName: node-1, conditions: {ready: true}}\n"+
		"- {addresses: ["+podIP(2, 0)+"], nodeName: node-2, conditions: {ready: true}}\n") +
		headlessYAML("big", "p", 8080, big.String()) + `apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec: {type: ExternalName, externalName: outside.test}
---
apiVersion: v1
kind: Service
metadata: {name: dual, namespace: default}
spec:
  clusterIP: 10.96.0.91
  clusterIPs: [10.96.0.91, "fd00:96::91"]
  ipFamilies: [IPv4, IPv6]
  ipFamilyPolicy: RequireDualStack
  ports: [{name: p, port: 80, protocol: TCP}]
---
`
}

// headlessYAML is a headless service with one TCP port and its endpoint slice (YAML list items).
func headlessYAML(name, portName string, port int, endpoints string) string {
	ports := fmt.Sprintf("[{name: %s, port: %d, protocol: TCP}]", portName, port)
	return `apiVersion: v1
kind: Service
metadata: {name: ` + name + `, namespace: default}
spec: {clusterIP: None, ports: ` + ports + `}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: ` + name + `-1, namespace: default, labels: {kubernetes.io/service-name: ` + name + `}}
addressType: IPv4
ports: ` + ports + `
endpoints:
` + endpoints + `---
`
}

// serveUpstream runs a resolver on the client's fabric address: outside.test has an A record,
// every other name is NXDOMAIN.
func serveUpstream(t *testing.T, ns *netlab.NS) {
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if q := r.Question[0]; strings.EqualFold(q.Name, "outside.test.") && q.Qtype == dns.TypeA {
			rr, _ := dns.NewRR("outside.test. 60 IN A " + outsideIP)
			m.Answer = []dns.RR{rr}
		} else if !strings.EqualFold(q.Name, "outside.test.") {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	var pc net.PacketConn
	if err := ns.Do(func() (err error) { pc, err = net.ListenPacket("udp", upstreamAddr); return err }); err != nil {
		t.Fatalf("upstream resolver: %v", err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: h}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
}

// dig runs dig in ns against the agent's address and returns its output.
func dig(t *testing.T, ns *netlab.NS, args ...string) string {
	t.Helper()
	out, err := digTry(ns, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// digTry is dig for conditions that may not hold yet: no answer is an error, not a failure.
func digTry(ns *netlab.NS, args ...string) (string, error) {
	argv := ns.Command(append([]string{"dig", "@" + dnsAddr, "+time=2", "+tries=1"}, args...)...)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out), nil
}

// digShort returns dig +short's lines, sorted, without dig's own remarks; a failed dig returns
// its error as the only line, which no expected answer equals.
func digShort(ns *netlab.NS, args ...string) []string {
	text, err := digTry(ns, append(args, "+short")...)
	if err != nil {
		return []string{err.Error()}
	}
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, ";") {
			out = append(out, line)
		}
	}
	slices.Sort(out)
	return out
}

// goResolver is Go's own resolver (not cgo) asking the agent from inside ns.
func goResolver(ns *netlab.NS) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return ns.DialNet(network, net.JoinHostPort(dnsAddr, "53"), 2*time.Second)
	}}
}

func TestDNS(t *testing.T) {
	testenv.RequireCommand(t, "dig")
	c := newCluster(t)
	serveUpstream(t, c.client)
	c.write(manifests{Services: labServices(), Extra: dnsExtra()})
	c.startBrain()
	for i := 1; i <= nodes; i++ {
		c.startAgent(i, "--dns-upstream", upstreamAddr)
	}
	pod := c.pod(1, 0)
	proc.Eventually(t, "the agent answers web's name", func() bool {
		return slices.Equal(digShort(pod, "web.default.svc.cluster.local"), []string{"10.96.0.10"})
	})
	t.Logf("dig @%s web.default.svc.cluster.local:\n%s", dnsAddr, dig(t, pod, "web.default.svc.cluster.local"))

	t.Run("dig", func(t *testing.T) { digCases(t, pod) })
	t.Run("headless", func(t *testing.T) { headlessCases(t, pod) })
	t.Run("go resolver", func(t *testing.T) { goResolverCases(t, pod) })
	t.Run("changes follow the rules", func(t *testing.T) { changeCases(t, c) })
	t.Run("address put back", func(t *testing.T) {
		// Removed from outside, the address comes back with the agent's next repair (500ms here).
		node := c.nodes[0].ns
		dev, _, _ := strings.Cut(strings.Fields(node.Run(t, "ip", "-o", "addr", "show", "to", dnsAddr+"/32"))[1], ":")
		node.Run(t, "ip", "addr", "del", dnsAddr+"/32", "dev", dev)
		proc.Eventually(t, "the DNS address is back", func() bool {
			return slices.Equal(digShort(pod, "web.default.svc.cluster.local"), []string{"10.96.0.10"})
		})
	})
}

func digCases(t *testing.T, pod *netlab.NS) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"dual.default.svc.cluster.local", "A"}, []string{"10.96.0.91"}},
		{[]string{"dual.default.svc.cluster.local", "AAAA"}, []string{"fd00:96::91"}},
		{[]string{"web.default.svc.cluster.local", "AAAA"}, nil},
		{[]string{"_p._tcp.web.default.svc.cluster.local", "SRV"}, []string{"0 100 80 web.default.svc.cluster.local."}},
		{[]string{"-x", "10.96.0.10"}, []string{"web.default.svc.cluster.local."}},
		{[]string{"outside.test"}, []string{outsideIP}},
		{[]string{"ext.default.svc.cluster.local"}, []string{outsideIP, "outside.test."}},
		{[]string{"+tcp", "web.default.svc.cluster.local"}, []string{"10.96.0.10"}},
	}
	for _, tc := range cases {
		if got := digShort(pod, tc.args...); !slices.Equal(got, tc.want) {
			t.Errorf("dig %v: %q, want %q", tc.args, got, tc.want)
		}
	}
	out := dig(t, pod, "nope.default.svc.cluster.local")
	if !strings.Contains(out, "status: NXDOMAIN") || !strings.Contains(out, "AUTHORITY: 1") || !strings.Contains(out, "IN\tSOA\tns.dns.cluster.local.") {
		t.Errorf("an unknown service is not NXDOMAIN with the SOA:\n%s", out)
	}
	if out := dig(t, pod, "cluster.local", "AXFR"); !strings.Contains(out, "Transfer failed") {
		t.Errorf("a zone transfer was not refused:\n%s", out)
	}
}

func headlessCases(t *testing.T, pod *netlab.NS) {
	db := []string{podIP(1, 0), podIP(2, 0)}
	proc.Eventually(t, "the headless service answers its endpoints", func() bool {
		return slices.Equal(digShort(pod, "db.default.svc.cluster.local"), db)
	})
	if got := digShort(pod, "db-0.db.default.svc.cluster.local"); !slices.Equal(got, db[:1]) {
		t.Errorf("the named endpoint: %q", got)
	}
	if got := digShort(pod, "_pg._tcp.db.default.svc.cluster.local", "SRV"); !slices.Equal(got, []string{
		"0 50 5432 10-244-2-10.db.default.svc.cluster.local.", "0 50 5432 db-0.db.default.svc.cluster.local."}) {
		t.Errorf("SRV per endpoint: %q", got)
	}
	// 100 addresses do not fit 512 bytes: UDP says so with TC, TCP carries them all.
	udp := dig(t, pod, "+noedns", "+ignore", "big.default.svc.cluster.local")
	if !regexpFlags(udp, "tc") {
		t.Errorf("a 100-address answer over UDP without EDNS0 is not truncated:\n%s", udp)
	}
	if got := digShort(pod, "+tcp", "big.default.svc.cluster.local"); len(got) != 100 {
		t.Errorf("over TCP: %d addresses, want 100", len(got))
	}
	if got := digShort(pod, "+noedns", "big.default.svc.cluster.local"); len(got) != 100 {
		t.Errorf("dig falling back to TCP after TC: %d addresses, want 100", len(got))
	}
}

// regexpFlags reports whether dig's header flags include flag.
func regexpFlags(out, flag string) bool {
	for _, line := range strings.Split(out, "\n") {
		if _, flags, ok := strings.Cut(line, ";; flags:"); ok {
			flags, _, _ = strings.Cut(flags, ";")
			return slices.Contains(strings.Fields(flags), flag)
		}
	}
	return false
}

func goResolverCases(t *testing.T, pod *netlab.NS) {
	r := goResolver(pod)
	ctx := t.Context()
	if got, err := r.LookupHost(ctx, "web.default.svc.cluster.local."); err != nil || !slices.Equal(got, []string{"10.96.0.10"}) {
		t.Errorf("LookupHost web: %v %v", got, err)
	}
	if got, err := r.LookupHost(ctx, "dual.default.svc.cluster.local."); err != nil || !sameSet(got, []string{"10.96.0.91", "fd00:96::91"}) {
		t.Errorf("LookupHost dual: %v %v", got, err)
	}
	if _, srv, err := r.LookupSRV(ctx, "p", "tcp", "web.default.svc.cluster.local."); err != nil || len(srv) != 1 || srv[0].Port != 80 {
		t.Errorf("LookupSRV: %v %v", srv, err)
	}
	if got, err := r.LookupAddr(ctx, "10.96.0.10"); err != nil || !slices.Equal(got, []string{"web.default.svc.cluster.local."}) {
		t.Errorf("LookupAddr: %v %v", got, err)
	}
	if _, err := r.LookupHost(ctx, "nope.default.svc.cluster.local."); !isNotFound(err) {
		t.Errorf("LookupHost of an unknown service: %v, want not found", err)
	}
	// Go's resolver retries over TCP on TC: all 100 addresses.
	if got, err := r.LookupHost(ctx, "big.default.svc.cluster.local."); err != nil || len(got) != 100 {
		t.Errorf("LookupHost big: %d addresses, %v", len(got), err)
	}
	if got, err := r.LookupHost(ctx, "outside.test."); err != nil || !slices.Equal(got, []string{outsideIP}) {
		t.Errorf("LookupHost outside.test (forwarded): %v %v", got, err)
	}
}

func isNotFound(err error) bool {
	var dnsErr *net.DNSError
	return err != nil && errors.As(err, &dnsErr) && dnsErr.IsNotFound
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// changeCases adds a service, moves its VIP and removes it: whenever the name answers with a VIP,
// that VIP already carries traffic from the pod.
func changeCases(t *testing.T, c *cluster) {
	pod := c.pod(1, 0)
	const name = "late.default.svc.cluster.local"
	steps := []struct{ what, vip string }{{"added", "10.96.0.95"}, {"VIP changed", "10.96.0.96"}, {"removed", ""}}
	for _, s := range steps {
		svcs := labServices()
		if s.vip != "" {
			svcs = append(svcs, service{Name: "late", ClusterIP: s.vip, Port: 80, Endpoints: []endpoint{{Node: 2}}})
		}
		c.write(manifests{Services: svcs, Extra: dnsExtra()})
		want := []string{s.vip}
		if s.vip == "" {
			want = nil
		}
		proc.Eventually(t, "late "+s.what, func() bool {
			got := digShort(pod, name)
			if !slices.Equal(got, want) {
				return false
			}
			// The name answers with the new VIP: the pod's connection to it must work already.
			if s.vip != "" {
				if g, err := pod.AskTCP(s.vip + ":80"); err != nil || netlab.Backend(g) != netlab.LabPodName(2, 0) {
					t.Fatalf("%s: %s answered %s, but the kernel does not serve it yet: %q %v", s.what, name, s.vip, g, err)
				}
			}
			return true
		})
	}
	if out := dig(t, pod, name); !strings.Contains(out, "status: NXDOMAIN") {
		t.Errorf("a removed service is not NXDOMAIN:\n%s", out)
	}
}
