package peer

import (
	"context"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"

	"strconv"
	"strings"
	"testing"
	"time"

	clientset "k8s.io/client-go/kubernetes"

	"github.com/ganglion-proxy/ganglion/e2e/kubelab"
	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
	"github.com/ganglion-proxy/ganglion/internal/testpki"
)

// options are the run's shape; make bench-peer takes the defaults, the environment overrides
// them for a quick look (GANGLION_PEER_SIZES=100 GANGLION_PEER_CHANGES=10).
type options struct {
	sizes   []int
	changes int
	// spacing bounds the random pause between one write and the next: longer than kube-proxy's
	// default --min-sync-period (1 s), so its rate limit is not what is measured, and random so
	// changes fall anywhere in the agent's 30 s drift-repair cycle, some inside a pass.
	spacingMin, spacingMax time.Duration
	// idleAt: sizes from this one on are also measured at rest for idle.
	idleAt int
	idle   time.Duration
}

func envOptions(t *testing.T) options {
	o := options{sizes: []int{100, 10000}, changes: 60, spacingMin: 1200 * time.Millisecond, spacingMax: 1800 * time.Millisecond,
		idleAt: 10000, idle: time.Minute}
	if s := os.Getenv("GANGLION_PEER_SIZES"); s != "" {
		o.sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 || n > 10000 {
				t.Fatalf("GANGLION_PEER_SIZES: %q (1 to 10000 each)", f)
			}
			o.sizes = append(o.sizes, n)
		}
	}
	if s := os.Getenv("GANGLION_PEER_CHANGES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("GANGLION_PEER_CHANGES: %q", s)
		}
		o.changes = n
	}
	if s := os.Getenv("GANGLION_PEER_IDLE_AT"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("GANGLION_PEER_IDLE_AT: %q", s)
		}
		o.idleAt = n
	}
	return o
}

// TestPeer is make bench-peer: upstream kube-proxy (nftables mode) and Ganglion (brain in
// Kubernetes mode, nftables agent) against one kube-apiserver, at each size. It prints BENCH
// peer lines and a Markdown table; it fails when a change never reaches a kernel.
func TestPeer(t *testing.T) {
	if os.Getenv("GANGLION_BENCH_PEER") == "" {
		t.Skip("the peer benchmark runs with GANGLION_BENCH_PEER=1 (make bench-peer)")
	}
	o := envOptions(t)
	h := newHarness(t)
	var results []Result
	for _, n := range o.sizes {
		results = append(results, h.measure(n, o)...)
	}
	fmt.Println()
	for _, r := range results {
		fmt.Println(r.Line())
	}
	fmt.Println()
	fmt.Print(Table(results))
	fmt.Println()
	for _, p := range h.phases {
		fmt.Println(p)
	}
}

const (
	brainPort  = "7070"
	metricPort = "7071"
	healthPort = "7072"
	proxyPort  = "10249" // both proxies' metrics
	// changeTimeout bounds a change's wait for either kernel; reaching it fails the run.
	changeTimeout = 30 * time.Second
	syncTimeout   = 5 * time.Minute
)

// harness is the lab: a fabric namespace with etcd, kube-apiserver and the brain; node 1 runs
// kube-proxy, node 2 the Ganglion agent.
type harness struct {
	t          *testing.T
	lab        *netlab.Lab
	api        *kubelab.APIServer
	cluster    *Cluster
	bins       kubelab.Bins
	bin        string
	pki        *testpki.PKI
	brainFlags []string
	kubeconfig string
	kp, gg     *netlab.NS
	changes    int
	phases     []string
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, bins: kubelab.RequireBins(t, true)}
	h.timed(0, "build ganglion", func() { h.bin = proc.Binaries(t) })
	h.timed(0, "lab and kube-apiserver", func() {
		h.lab = netlab.NewLab(t, netlab.LabOptions{Nodes: 2, PodsPerNode: 1})
		h.api = kubelab.Start(t, h.bins, h.lab.Fabric)
	})
	h.kp, h.gg = h.lab.Nodes[0].NS, h.lab.Nodes[1].NS
	// The load writes as fast as the server takes it: no client-side limit.
	cfg := h.api.RESTConfig(h.api.AdminToken)
	cfg.QPS, cfg.Burst = 100000, 100000
	client, err := clientset.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.cluster = NewCluster(client)
	for name, ip := range map[string]string{NodeKubeProxy: netlab.LabNodeIP(1), NodeGanglion: netlab.LabNodeIP(2), NodePods: netlab.LabNodeIP(3)} {
		if err := h.cluster.CreateNode(context.Background(), name, ip); err != nil {
			t.Fatal(err)
		}
	}
	// Both proxies read the API as an administrator: neither is held back by RBAC.
	h.kubeconfig = h.api.Kubeconfig("proxy", h.api.AdminToken)
	h.pki = testpki.New(t)
	h.brainFlags = h.pki.BrainFlags(netlab.FabricIP)
	return h
}

// timed runs fn and records how long it took, printing it at once as progress.
func (h *harness) timed(n int, what string, fn func()) time.Duration {
	start := time.Now()
	fn()
	d := time.Since(start)
	line := fmt.Sprintf("PHASE peer services=%d phase=%q seconds=%.1f", n, what, d.Seconds())
	fmt.Println(line)
	h.phases = append(h.phases, line)
	return d
}

// running is a proxy process and its pid, for /proc.
type running struct {
	*proc.Proc
	pid int
}

func (h *harness) start(comm string, argv []string) *running {
	p := proc.Start(h.t, argv...)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if pid, err := ChildPID(comm); err == nil {
			return &running{Proc: p, pid: pid}
		} else if time.Now().After(deadline) || p.Exited() {
			h.t.Fatalf("%s: %v\n%s", comm, err, proc.Tail(p.Output(), 4000))
		}
	}
}

func (h *harness) cpu(r *running) time.Duration {
	d, err := CPUOf(r.pid)
	if err != nil {
		h.t.Fatalf("cpu of %d: %v", r.pid, err)
	}
	return d
}

func (h *harness) rss(r *running) float64 {
	v, err := RSSOf(r.pid)
	if err != nil {
		h.t.Fatalf("rss of %d: %v", r.pid, err)
	}
	return v
}

// waitAll waits until mon has seen every address of sightings, and returns the last sighting.
func (h *harness) waitAll(name string, who *running, mon *Monitor, sightings []*Sighting) time.Time {
	var last time.Time
	deadline := time.Now().Add(syncTimeout)
	for i, s := range sightings {
		at, ok := s.Wait(time.Until(deadline))
		if !ok {
			h.t.Fatalf("%s programmed %d of %d services in %v (notifications read %d, dropped %d)\n%s",
				name, i, len(sightings), syncTimeout, mon.Messages.Load(), mon.Drops.Load(), proc.Tail(who.Output(), 4000))
		}
		if at.After(last) {
			last = at
		}
	}
	return last
}

func clusterIPs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = ClusterIP(i)
	}
	return out
}

func (h *harness) startKubeProxy() []string {
	ip := netlab.LabNodeIP(1)
	return h.kp.Command(h.bins.KubeProxy, "--kubeconfig", h.kubeconfig, "--hostname-override", NodeKubeProxy,
		"--proxy-mode", "nftables", "--cluster-cidr", ClusterCIDR, "--bind-address", ip,
		"--metrics-bind-address", net.JoinHostPort(ip, proxyPort), "--healthz-bind-address", net.JoinHostPort(ip, "10256"),
		// Leave the namespace's conntrack settings alone: nothing here measures them.
		"--conntrack-max-per-core", "0", "--conntrack-tcp-timeout-established", "0", "--conntrack-tcp-timeout-close-wait", "0")
}

func (h *harness) startBrain() []string {
	ip := netlab.FabricIP
	return h.lab.Fabric.Command(append([]string{filepath.Join(h.bin, "ganglion-controlplane"), "serve", "--source", "kubernetes",
		"--kubeconfig", h.kubeconfig, "--listen", net.JoinHostPort(ip, brainPort),
		"--health-listen", net.JoinHostPort(ip, healthPort), "--metrics-listen", net.JoinHostPort(ip, metricPort)}, h.brainFlags...)...)
}

// startAgent is the nftables agent with its defaults, --reconcile-interval (30 s) included.
func (h *harness) startAgent() []string {
	ip := netlab.LabNodeIP(2)
	return h.gg.Command(append([]string{filepath.Join(h.bin, "ganglion-agent"), "--node-name", NodeGanglion,
		"--brain", net.JoinHostPort(netlab.FabricIP, brainPort), "--dataplane", "nftables",
		"--node-ip", ip, "--pod-cidr", netlab.LabPodCIDR(2),
		"--healthz-bind-address", net.JoinHostPort(ip, "10256"), "--metrics-bind-address", net.JoinHostPort("127.0.0.1", proxyPort)},
		h.pki.AgentFlags(NodeGanglion)...)...)
}

// waitBrainReady polls the brain's /readyz: it answers 200 once the brain has listed everything.
func (h *harness) waitBrainReady(b *running) {
	c := h.lab.Fabric.HTTPClient()
	url := "http://" + net.JoinHostPort(netlab.FabricIP, healthPort) + "/readyz"
	for deadline := time.Now().Add(syncTimeout); ; time.Sleep(20 * time.Millisecond) {
		if b.Exited() || time.Now().After(deadline) {
			h.t.Fatalf("brain not ready:\n%s", proc.Tail(b.Output(), 4000))
		}
		if resp, err := c.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
	}
}

// flush empties both nodes' rulesets, so that each size starts from an empty kernel.
func (h *harness) flush() {
	for _, ns := range []*netlab.NS{h.kp, h.gg} {
		ns.Run(h.t, "nft", "flush", "ruleset")
	}
}

// procs are the three measured processes of one size, and when the agent's drift-repair ticker
// started.
type procs struct {
	kp, agent, brain *running
	repairBase       time.Time
}

// repairEvery is the agent's default --reconcile-interval: the agent is given no such flag, so
// the loop measures drift repair as shipped, and aims some changes at its ticks.
const repairEvery = 30 * time.Second

// repairBase is when the agent started its drift-repair ticker: it logs "agent starting" just
// after; the process's start is the fallback.
func repairBase(agent *running, started time.Time) time.Time {
	if t, ok := logTime(agent.Output(), "agent starting"); ok {
		return t
	}
	fmt.Println("INFO peer the agent's \"agent starting\" line was not found: drift-repair ticks are counted from its process start")
	return started
}

// measure runs one size: load, sync each proxy from an empty kernel, the paired change loop,
// at rest, and returns its results.
func (h *harness) measure(n int, o options) []Result {
	ctx := context.Background()
	h.timed(n, "load services", func() {
		if err := h.cluster.Load(ctx, n, 16); err != nil {
			h.t.Fatal(err)
		}
	})
	h.flush()
	kpMon, ggMon := h.listen(h.kp), h.listen(h.gg)
	defer kpMon.Close()
	defer ggMon.Close()

	var p procs
	var kpSync, ggSync, brainSync time.Duration
	h.timed(n, "kube-proxy initial sync", func() {
		want := kpMon.Expect(clusterIPs(n)...)
		start := time.Now()
		p.kp = h.start("kube-proxy", h.startKubeProxy())
		kpSync = h.waitAll("kube-proxy", p.kp, kpMon, want).Sub(start)
	})
	h.timed(n, "brain list and ready", func() {
		start := time.Now()
		p.brain = h.start("ganglion-controlplane", h.startBrain())
		h.waitBrainReady(p.brain)
		brainSync = time.Since(start)
	})
	h.timed(n, "agent initial sync", func() {
		want := ggMon.Expect(clusterIPs(n)...)
		start := time.Now()
		p.agent = h.start("ganglion-agent", h.startAgent())
		ggSync = h.waitAll("ganglion-agent", p.agent, ggMon, want).Sub(start)
		p.repairBase = repairBase(p.agent, start)
	})
	// Let the first syncs' aftermath (kube-proxy's follow-up sync, the agent's acks) pass.
	time.Sleep(5 * time.Second)

	var loop loopResult
	h.timed(n, fmt.Sprintf("%d paired changes", o.changes), func() { loop = h.changeLoop(ctx, n, o, p, kpMon, ggMon) })
	results := loop.results(n)
	results = append(results[:2], append([]Result{
		{Services: n, Name: "initial_sync_s", KubeProxy: kpSync.Seconds(), Ganglion: ggSync.Seconds(), Spread: []float64{ggSync.Seconds() / kpSync.Seconds()}},
	}, results[2:]...)...)
	results = append(results, Result{Services: n, Name: "brain_sync_s", KubeProxy: math.NaN(), Ganglion: brainSync.Seconds()})
	if n >= o.idleAt {
		h.timed(n, "at rest", func() { results = append(results, h.idle(n, o, p)...) })
	}
	for _, r := range []*running{p.kp, p.agent, p.brain} {
		r.Stop()
	}
	if d := kpMon.Drops.Load() + ggMon.Drops.Load(); d > 0 {
		fmt.Printf("INFO peer services=%d monitor_drops=%d (notifications the kernel could not queue during the syncs)\n", n, d)
	}
	h.flush()
	return results
}

func (h *harness) listen(ns *netlab.NS) *Monitor {
	m, err := Listen(ns)
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}
