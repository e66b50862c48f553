package stream

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// heldBench is a node's share of a large cluster as the brain frames it for the stream: the
// snapshot in chunks, then single-endpoint changes, each an encoded StreamResponse.
type heldBench struct {
	snapshot [][]byte
	changes  [][]byte
}

const (
	benchServices  = 10_000
	benchEndpoints = 5
	benchChanges   = 1_000
	benchNode      = "node-0"
	benchChunk     = 1 << 20 // the brain's default chunk is about this size
)

var heldBenchData = sync.OnceValue(func() *heldBench {
	e := compute.NewEngine(compute.Options{})
	for i := range benchServices {
		e.SetService(benchService(i))
		e.SetSlice(benchSlice(i, 0))
	}
	hb := &heldBench{}
	var chunk []*compute.Resource
	size := 0
	for _, r := range e.NodeState(benchNode) {
		chunk = append(chunk, r)
		if size += len(r.Wire); size >= benchChunk {
			hb.snapshot = append(hb.snapshot, benchFrame(uint64(len(hb.snapshot)+1), chunk, nil, false))
			chunk, size = nil, 0
		}
	}
	hb.snapshot = append(hb.snapshot, benchFrame(uint64(len(hb.snapshot)+1), chunk, nil, true))
	for j := range benchChanges {
		i := j * 7919 % benchServices // spread over the services
		d := e.SetSlice(benchSlice(i, j+1))
		var ups []*compute.Resource
		var rms []string
		for _, name := range append(d.Shared, d.Nodes[benchNode]...) {
			if r := e.Resolve(benchNode, name); r != nil {
				ups = append(ups, r)
			} else {
				rms = append(rms, name)
			}
		}
		hb.changes = append(hb.changes, benchFrame(uint64(1000+j), ups, rms, false))
	}
	return hb
})

// benchService is a ClusterIP service; every tenth is a NodePort with a local external policy,
// so that its ports have local sets too.
func benchService(i int) *model.Service {
	s := &model.Service{
		Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("svc-%d", i), Type: model.TypeClusterIP,
		ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
		Ports:      []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}},
	}
	if i%10 == 0 {
		s.Type, s.ExternalTrafficLocal, s.HealthCheckNodePort = model.TypeNodePort, true, uint16(32000+i%500)
		s.Ports[0].NodePort = uint16(30000 + i%2000)
	}
	return s
}

// benchSlice is the service's endpoints, spread over nodes; gen moves one of them.
func benchSlice(i, gen int) *model.EndpointSlice {
	sl := &model.EndpointSlice{
		Namespace: fmt.Sprintf("ns-%d", i%50), Name: fmt.Sprintf("svc-%d-1", i), Service: fmt.Sprintf("svc-%d", i), Family: model.IPv4,
		Ports: []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}},
	}
	for k := range benchEndpoints {
		n := i*benchEndpoints + k
		if k == gen%benchEndpoints && gen > 0 {
			n += 1_000_000 * (gen%7 + 1)
		}
		sl.Endpoints = append(sl.Endpoints, model.Endpoint{Address: netip.AddrFrom4([4]byte{10, byte(64 + n>>16), byte(n >> 8), byte(n)}),
			Ready: true, Serving: true, NodeName: fmt.Sprintf("node-%d", n%100)})
	}
	return sl
}

// benchFrame encodes StreamResponse{update: Update{...}} as the brain does (controlplane/stream).
func benchFrame(gen uint64, ups []*compute.Resource, rms []string, complete bool) []byte {
	var u []byte
	u = protowire.AppendTag(u, 1, protowire.VarintType)
	u = protowire.AppendVarint(u, gen)
	for _, r := range ups {
		u = protowire.AppendTag(u, 2, protowire.BytesType)
		u = protowire.AppendBytes(u, r.Wire)
	}
	for _, n := range rms {
		u = protowire.AppendTag(u, 3, protowire.BytesType)
		u = protowire.AppendString(u, n)
	}
	if complete {
		u = protowire.AppendTag(u, 4, protowire.VarintType)
		u = protowire.AppendVarint(u, 1)
	}
	out := protowire.AppendTag(nil, 1, protowire.BytesType)
	return protowire.AppendBytes(out, u)
}

// nopDataplane programs nothing and keeps nothing: what the agent itself holds is measured.
type nopDataplane struct{ ports int }

func (d *nopDataplane) Apply(_ context.Context, c dataplane.Change) map[string]error {
	d.ports += len(c.Upserts)
	return nil
}
func (d *nopDataplane) Prune(context.Context, map[string]bool) error { return nil }
func (d *nopDataplane) Reconcile(context.Context) error              { return nil }
func (d *nopDataplane) Close() error                                 { return nil }

// cpuTime is the CPU time the process has used, the collector's included: unlike ns/op, it does
// not count time other processes took from it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkAgentHeld feeds an agent a node's share of 10,000 services with 5 endpoints each, as
// the stream delivers it (encoded frames, decoded as the agent's receive path does), then applies
// single-endpoint changes, one per iteration (run it with -benchtime 1000x). It reports the heap
// the agent's state holds after collection (heap_MiB), the heap in use at its highest while the
// snapshot is taken (snapshot_peak_MiB, sampled after each chunk, garbage included: what RSS
// follows), the time to take the snapshot (snapshot_ms), and ns, CPU ns (the collector's
// included), bytes and allocs per change.
func BenchmarkAgentHeld(b *testing.B) {
	hb := heldBenchData()
	ctx := context.Background()
	base := heapInuse()
	dp := &nopDataplane{}
	a := New(Config{NodeName: benchNode, Dataplane: dp, Log: slog.New(slog.DiscardHandler)})
	start := time.Now()
	var peak uint64
	for _, f := range hb.snapshot {
		benchApply(b, ctx, a, f)
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
	}
	snapshot := time.Since(start)
	if !a.synced || dp.ports == 0 {
		b.Fatalf("snapshot not applied: synced %v, ports %d", a.synced, dp.ports)
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu := cpuTime()
	for i := range b.N {
		benchApply(b, ctx, a, hb.changes[i%len(hb.changes)])
	}
	cpu = cpuTime() - cpu
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/change")
	held := heapInuse() - base
	b.ReportMetric(float64(held)/(1<<20), "heap_MiB")
	b.ReportMetric(float64(snapshot.Milliseconds()), "snapshot_ms")
	b.ReportMetric(float64(peak-base)/(1<<20), "snapshot_peak_MiB")
	b.ReportMetric(float64(a.Status().Resources), "resources")
	runtime.KeepAlive(a)
}

// benchApply receives one frame as the agent's stream does and applies it.
func benchApply(b *testing.B, ctx context.Context, a *Agent, frame []byte) {
	var resp response
	if err := resp.parse(frame); err != nil {
		b.Fatal(err)
	}
	a.apply(ctx, "bench", resp.update)
}
