package nftables

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// heapEndpoints is the side-by-side scale with kube-proxy: 10,000 services of 5
// endpoints each.
const heapEndpoints = 5

// BenchmarkViewHeap reports the heap the dataplane holds (heap_MiB) once 10,000 services of 5
// endpoints each are applied, and the most the heap grew during that full sync (peak_MiB,
// sampled every millisecond): what the agent keeps of what it programmed, and what the sync
// costs on the way. "nop" plans and applies the view over a kernel that accepts everything (no
// root); "netns" commits to a real table in a namespace of its own. Profile with -memprofile
// and -memprofilerate=1, then pprof -sample_index=inuse_space: heapHeld keeps the last
// dataplane reachable for the profile.
func BenchmarkViewHeap(b *testing.B) {
	ports := benchPorts(benchServices)
	for i := range ports {
		if bs := ports[i].Cluster.Backends; len(bs) > heapEndpoints {
			ports[i].Cluster.Backends = bs[:heapEndpoints]
		}
	}
	b.Run("nop", func(b *testing.B) { viewHeap(b, ports, newNop) })
	b.Run("netns", func(b *testing.B) {
		netlab.Require(b)
		viewHeap(b, ports, func(b *testing.B) *Dataplane {
			ns, done := emptyNS(b)
			b.Cleanup(done)
			d, err := New(benchNode(), WithNetNS(ns.FD()))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = d.Close() })
			return d
		})
	})
}

func viewHeap(b *testing.B, ports []dataplane.Port, open func(*testing.B) *Dataplane) {
	var held, peak float64
	for b.Loop() {
		heapHeld = nil
		d := open(b)
		base := heapInuse()
		stop := samplePeak()
		if errs := d.Apply(context.Background(), dataplane.Change{Upserts: ports}); errs != nil {
			b.Fatal(errs)
		}
		peak = float64(stop()-base) / (1 << 20)
		heapHeld = d
		held = float64(heapInuse()-base) / (1 << 20)
	}
	b.ReportMetric(held, "heap_MiB")
	b.ReportMetric(peak, "peak_MiB")
	b.ReportMetric(0, "ns/op")
}

// heapHeld keeps the benchmark's last dataplane reachable after it returns, for -memprofile.
var heapHeld *Dataplane

// heapInuse returns the live heap after two collections.
func heapInuse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse)
}

// samplePeak samples the heap's objects every millisecond until the returned stop, which
// returns the most seen.
func samplePeak() func() int64 {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var most int64
	wg.Go(func() {
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			most = max(most, int64(s[0].Value.Uint64()))
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	})
	return func() int64 {
		close(done)
		wg.Wait()
		return most
	}
}
