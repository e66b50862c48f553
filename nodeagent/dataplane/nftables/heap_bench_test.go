package nftables

import (
	"context"
	"runtime"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// heapEndpoints is the side-by-side scale with kube-proxy: 10,000 services of 5
// endpoints each.
const heapEndpoints = 5

// BenchmarkViewHeap reports the heap the dataplane holds (heap_MiB) once 10,000 services of 5
// endpoints each are applied, over the no-op kernel: what the agent keeps of what it programmed.
// Profile it with -memprofile and -memprofilerate=1, then pprof -sample_index=inuse_space.
func BenchmarkViewHeap(b *testing.B) {
	ports := benchPorts(benchServices)
	for i := range ports {
		if bs := ports[i].Cluster.Backends; len(bs) > heapEndpoints {
			ports[i].Cluster.Backends = bs[:heapEndpoints]
		}
	}
	heapHeld = nil
	var base runtime.MemStats
	gcTwice()
	runtime.ReadMemStats(&base)
	for b.Loop() {
		heapHeld = nil
		heapHeld = newNop(b)
		if errs := heapHeld.Apply(context.Background(), dataplane.Change{Upserts: ports}); errs != nil {
			b.Fatal(errs)
		}
	}
	b.StopTimer()
	var held runtime.MemStats
	gcTwice()
	runtime.ReadMemStats(&held)
	b.ReportMetric(float64(int64(held.HeapInuse)-int64(base.HeapInuse))/(1<<20), "heap_MiB")
	b.ReportMetric(0, "ns/op")
	runtime.KeepAlive(ports)
}

// heapHeld keeps the benchmark's dataplane reachable after it returns, for -memprofile.
var heapHeld *Dataplane

func gcTwice() {
	runtime.GC()
	runtime.GC()
}
