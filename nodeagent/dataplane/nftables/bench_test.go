package nftables

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/internal/benchstat"
	"github.com/ganglion-proxy/ganglion/internal/testenv"
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
	port := func(shift int) dataplane.Port {
		p := benchPort(i, shift)
		if i >= 2000 {
			p.Service.Frontends = p.Service.Frontends[:1]
			p.Service.External = nil
		}
		return p
	}
	// Back to the installed endpoints, untimed, so every sample below changes something
	// whatever an earlier round left.
	apply(b, d, port(0))
	var ds []time.Duration
	for k := range benchSamples {
		p := port((k + 1) % 2)
		start := time.Now()
		if errs := d.Apply(context.Background(), dataplane.Change{Upserts: []dataplane.Port{p}}); errs != nil {
			b.Fatal(errs)
		}
		ds = append(ds, time.Since(start))
		if d.lastMessages == 0 {
			b.Fatalf("sample %d changed nothing", k)
		}
	}
	return benchstat.Runs(ds).Median()
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
	return benchstat.Runs(ds).Median()
}

// BenchmarkNFT prints the BENCH line. Run it with -benchtime 1x: one iteration already
// repeats every measurement benchRuns times.
func BenchmarkNFT(b *testing.B) {
	for range b.N {
		benchNFT(b)
	}
}

func benchNFT(b *testing.B) {
	netlab.Require(b)
	testenv.RequireCommand(b, "nft")
	ports := benchPorts(benchServices)
	// Full syncs first, while nothing else of the benchmark holds the kernel's memory.
	ours, nft := fullSyncs(b, benchNode(), ports)

	// Endpoint changes with 100 and 10,000 services installed, and first packets through
	// tables of 10 and 10,000 services. The tables stay up together, so each round measures
	// all four within a few seconds of each other.
	smallNS, done := emptyNS(b)
	defer done()
	ds, err := New(benchNode(), WithNetNS(smallNS.FD()))
	if err != nil {
		b.Fatal(err)
	}
	defer ds.Close()
	apply(b, ds, benchPorts(benchSmall)...)
	tiny := newLab(b, 2)
	apply(b, tiny.dataplane(b), benchPorts(benchTiny)...)
	big := newLab(b, 2)
	db := big.dataplane(b)
	apply(b, db, ports...)
	var apply100, apply10k, connect10, connect10k benchstat.Runs
	for k := range benchApplyRuns {
		apply100 = append(apply100, medianApplyOneChange(b, ds, benchSmall))
		apply10k = append(apply10k, medianApplyOneChange(b, db, benchServices))
		if k < benchRuns {
			connect10 = append(connect10, medianConnect(b, tiny))
			connect10k = append(connect10k, medianConnect(b, big))
		}
	}
	b.Logf("messages per endpoint change: %d with %d services, %d with %d", ds.lastMessages, benchSmall, db.lastMessages, benchServices)
	b.Logf("full sync runs: ours %v, nft -f %v", ours, nft)

	applyRatio := benchstat.RatioOf(apply10k, apply100)
	if applyRatio.Med > benchApplyFloor {
		b.Fatalf("apply ratio %s above its floor %.1f", applyRatio.Keys("apply_ratio"), benchApplyFloor)
	}
	fmt.Printf("BENCH nft %s apply_runs=%d %s %s runs=%d %s %s %s %s %s %s\n",
		applyRatio.Keys("apply_ratio"), benchApplyRuns, benchstat.RatioOf(ours, nft).Keys("fullsync_vs_nft"),
		benchstat.RatioOf(connect10k, connect10).Keys("firstpacket_ratio"), benchRuns,
		apply100.MsKeys("apply100_ms", 3), apply10k.MsKeys("apply10k_ms", 3),
		ours.MsKeys("fullsync_ms", 0), nft.MsKeys("nft_f_ms", 0),
		connect10.UsKeys("connect10_us"), connect10k.UsKeys("connect10k_us"))
}
