package peer

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
)

// cpuWindow is how many changes one CPU sample spans: the per-window ratios give the spread.
const cpuWindow = 10

// loopResult is what the change loop measured, per change and per sample.
type loopResult struct {
	changes int
	// kpMs and ggMs are each change's time to each kernel, paired by index.
	kpMs, ggMs []float64
	// RSS samples (MiB), paired by index.
	kpRSS, ggRSS, brainRSS []float64
	// CPU over the whole loop, and per change within each window of cpuWindow changes (ms).
	kpCPU, ggCPU, brainCPU time.Duration
	kpWin, ggWin           []float64
}

func (l loopResult) results(n int) []Result {
	changes := Ratios(l.ggMs, l.kpMs)
	perChange := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) / float64(l.changes) }
	return []Result{
		{Services: n, Name: "change_p50_ms", KubeProxy: Percentile(l.kpMs, 0.5), Ganglion: Percentile(l.ggMs, 0.5), Spread: changes},
		{Services: n, Name: "change_p99_ms", KubeProxy: Percentile(l.kpMs, 0.99), Ganglion: Percentile(l.ggMs, 0.99), Spread: changes},
		{Services: n, Name: "agent_rss_mib", KubeProxy: Percentile(l.kpRSS, 0.5), Ganglion: Percentile(l.ggRSS, 0.5), Spread: Ratios(l.ggRSS, l.kpRSS)},
		{Services: n, Name: "brain_rss_mib", KubeProxy: math.NaN(), Ganglion: Percentile(l.brainRSS, 0.5)},
		{Services: n, Name: "cpu_per_change_ms", KubeProxy: perChange(l.kpCPU), Ganglion: perChange(l.ggCPU), Spread: Ratios(l.ggWin, l.kpWin)},
		{Services: n, Name: "brain_cpu_per_change_ms", KubeProxy: math.NaN(), Ganglion: perChange(l.brainCPU)},
	}
}

func (h *harness) cpus(p procs) [3]time.Duration {
	return [3]time.Duration{h.cpu(p.kp), h.cpu(p.agent), h.cpu(p.brain)}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// changeLoop makes o.changes paired changes: each replaces one endpoint's address in a random
// service's EndpointSlice, one write both proxies see, and times it until each kernel holds the
// new address. The seed is fixed, so every run changes the same services with the same pauses.
func (h *harness) changeLoop(ctx context.Context, n int, o options, p procs, kpMon, ggMon *Monitor) loopResult {
	rng := rand.New(rand.NewPCG(uint64(n), 13))
	l := loopResult{changes: o.changes}
	before := h.metrics()
	start := time.Now()
	cpu0 := h.cpus(p)
	win := cpu0
	aimed := map[int]time.Duration{} // change → its write's offset from a drift-repair tick
	for c := range o.changes {
		if c%5 == 0 {
			l.kpRSS = append(l.kpRSS, h.rss(p.kp))
			l.ggRSS = append(l.ggRSS, h.rss(p.agent))
			l.brainRSS = append(l.brainRSS, h.rss(p.brain))
		}
		i, k := rng.IntN(n), rng.IntN(EndpointsPerService)
		pause := o.spacingMin + time.Duration(rng.Int64N(int64(o.spacingMax-o.spacingMin)))
		addr := ChangeIP(h.changes)
		h.changes++
		sk, sg := kpMon.Expect(addr)[0], ggMon.Expect(addr)[0]
		t0 := time.Now()
		if err := h.cluster.Replace(ctx, i, k, addr, t0); err != nil {
			h.t.Fatal(err)
		}
		atK, okK := sk.Wait(changeTimeout)
		atG, okG := sg.Wait(changeTimeout)
		if !okK || !okG {
			h.t.Fatalf("change %d (%s endpoint %d -> %s) not in the kernel after %v: kube-proxy %v, ganglion %v",
				c, ServiceName(i), k, addr, changeTimeout, okK, okG)
		}
		l.kpMs = append(l.kpMs, ms(atK.Sub(t0)))
		l.ggMs = append(l.ggMs, ms(atG.Sub(t0)))
		if (c+1)%cpuWindow == 0 {
			now := h.cpus(p)
			l.kpWin = append(l.kpWin, ms(now[0]-win[0])/cpuWindow)
			l.ggWin = append(l.ggWin, ms(now[1]-win[1])/cpuWindow)
			win = now
		}
		next := t0.Add(pause)
		// When a drift-repair tick comes before the write after next could, the next write goes
		// at that tick instead (a few ms around it, in turn): every pass of the loop meets a
		// change, however short passes are. The pause then is between spacingMin and
		// spacingMin+spacingMax, never under kube-proxy's minimum sync period.
		off := aimOffsets[len(aimed)%len(aimOffsets)]
		earliest := t0.Add(o.spacingMin)
		if at := tickAt(p.repairBase, repairEvery, earliest.Add(-off)).Add(off); at.Before(earliest.Add(o.spacingMax)) {
			next = at
			aimed[c+1] = off
		}
		time.Sleep(time.Until(next))
	}
	cpu1 := h.cpus(p)
	l.kpCPU, l.ggCPU, l.brainCPU = cpu1[0]-cpu0[0], cpu1[1]-cpu0[1], cpu1[2]-cpu0[2]
	h.explain(n, time.Since(start), before)
	// The monitor reads raw bytes: the ruleset as nft prints it must agree on the last change.
	last := ChangeIP(h.changes - 1)
	for name, ns := range map[string]*netlab.NS{"kube-proxy": h.kp, "ganglion": h.gg} {
		if !listsAddr(ns.Run(h.t, "nft", "list", "ruleset"), last) {
			h.t.Fatalf("the monitor saw %s in %s's kernel, but nft list ruleset does not show it", last, name)
		}
	}
	var lines []string
	for c := range o.changes {
		if off, ok := aimed[c]; ok {
			lines = append(lines, fmt.Sprintf("%+dms:%.1f/%.1f", off.Milliseconds(), l.kpMs[c], l.ggMs[c]))
		}
	}
	fmt.Printf("INFO peer services=%d changes written at a drift-repair tick (offset:kube-proxy/ganglion ms): %s\n", n, strings.Join(lines, " "))
	// The slowest changes with their pair: both slow at once points at the machine, not a proxy.
	for _, side := range []struct {
		who        string
		own, other []float64
	}{{"ganglion", l.ggMs, l.kpMs}, {"kube-proxy", l.kpMs, l.ggMs}} {
		order := make([]int, len(side.own))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return cmp.Compare(side.own[b], side.own[a]) })
		var worst []string
		for _, c := range order[:min(3, len(order))] {
			worst = append(worst, fmt.Sprintf("#%d:%.1f/%.1f", c, side.own[c], side.other[c]))
		}
		fmt.Printf("INFO peer services=%d slowest %s changes (change:%s/other ms): %s\n", n, side.who, side.who, strings.Join(worst, " "))
	}
	return l
}

// aimOffsets are where, around a drift-repair tick, aimed changes are written, in turn.
var aimOffsets = []time.Duration{-5 * time.Millisecond, 0, 5 * time.Millisecond}

// snapshot is every measured process's metrics at one moment, each read from inside its
// namespace.
type snapshot struct{ kp, agent, brain map[string]float64 }

func (h *harness) metrics() snapshot {
	read := func(ns *netlab.NS, host string) map[string]float64 {
		m, err := scrape(ns.HTTPClient(), "http://"+host+"/metrics")
		if err != nil {
			h.t.Logf("metrics of %s: %v", host, err)
		}
		return m
	}
	return snapshot{
		kp:    read(h.kp, net.JoinHostPort(netlab.LabNodeIP(1), proxyPort)),
		agent: read(h.gg, net.JoinHostPort("127.0.0.1", proxyPort)),
		brain: read(h.lab.Fabric, net.JoinHostPort(netlab.FabricIP, metricPort)),
	}
}

// explain prints, from the processes' own metrics over the loop, where their time went:
// kube-proxy's syncs, the agent's drift-repair passes and how much of the loop they covered (so
// how many changes can be expected to have arrived during one), and each proxy's own network
// programming latency, measured from the slices' trigger-time annotation: a cross-check of the
// monitor's figures.
func (h *harness) explain(n int, loop time.Duration, before snapshot) {
	after := h.metrics()
	// Others' work on a shared machine moves every figure: say how busy it was.
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Printf("INFO peer services=%d load average after the loop: %s\n", n, strings.Join(strings.Fields(string(b))[:3], " "))
	}
	delta := func(a, b map[string]float64, name string) float64 { return a[name] - b[name] }
	mean := func(who string, a, b map[string]float64, m string) {
		if count := delta(a, b, m+"_count"); count > 0 {
			fmt.Printf("INFO peer services=%d %s %s: %.0f in the loop, mean %.1f ms\n", n, who, m, count, 1000*delta(a, b, m+"_sum")/count)
		}
	}
	for _, m := range []string{"kubeproxy_sync_proxy_rules_duration_seconds", "kubeproxy_sync_full_proxy_rules_duration_seconds",
		"kubeproxy_sync_partial_proxy_rules_duration_seconds", "kubeproxy_network_programming_duration_seconds"} {
		mean("kube-proxy", after.kp, before.kp, m)
	}
	mean("brain", after.brain, before.brain, "ganglion_network_programming_duration_seconds")
	// RSS against what the Go heap holds: the rest is the collector's headroom (GOGC), stacks
	// and the runtime.
	mib := func(m map[string]float64, name string) string {
		if v, ok := m[name]; ok {
			return fmt.Sprintf("%.1f", v/(1<<20))
		}
		return "-"
	}
	for _, g := range []struct {
		who string
		m   map[string]float64
	}{{"kube-proxy", after.kp}, {"agent", after.agent}, {"brain", after.brain}} {
		fmt.Printf("INFO peer services=%d %s Go heap: live %s MiB (go_memstats_heap_alloc_bytes), in use %s MiB, from the OS %s MiB\n",
			n, g.who, mib(g.m, "go_memstats_heap_alloc_bytes"), mib(g.m, "go_memstats_heap_inuse_bytes"), mib(g.m, "go_memstats_sys_bytes"))
	}
	const pass = "ganglion_dataplane_reconcile_seconds"
	count, sum := delta(after.agent, before.agent, pass+"_count"), delta(after.agent, before.agent, pass+"_sum")
	if count > 0 {
		fmt.Printf("INFO peer services=%d agent drift repair: %.0f passes in the %.0f s loop (%.0f read the tables back in full), mean %.1f ms, %.1f%% of the loop\n",
			n, count, loop.Seconds(), delta(after.agent, before.agent, "ganglion_dataplane_reconcile_dumps_total"), 1000*sum/count, 100*sum/loop.Seconds())
	} else {
		_, exported := after.agent[pass+"_count"]
		fmt.Printf("INFO peer services=%d agent drift repair: no pass recorded in the %.0f s loop (metric exported: %v)\n", n, loop.Seconds(), exported)
	}
}

// idle measures CPU with nothing changing, in six windows (the per-window ratios give the spread).
func (h *harness) idle(n int, o options, p procs) []Result {
	time.Sleep(2 * time.Second)
	const windows = 6
	prev := h.cpus(p)
	first := prev
	var kpW, ggW []float64
	for range windows {
		time.Sleep(o.idle / windows)
		now := h.cpus(p)
		kpW = append(kpW, (now[0] - prev[0]).Seconds())
		ggW = append(ggW, (now[1] - prev[1]).Seconds())
		prev = now
	}
	perMin := func(d time.Duration) float64 { return d.Seconds() / o.idle.Minutes() }
	return []Result{
		{Services: n, Name: "idle_cpu_s_per_min", KubeProxy: perMin(prev[0] - first[0]), Ganglion: perMin(prev[1] - first[1]), Spread: Ratios(ggW, kpW)},
		{Services: n, Name: "brain_idle_cpu_s_per_min", KubeProxy: math.NaN(), Ganglion: perMin(prev[2] - first[2])},
	}
}
