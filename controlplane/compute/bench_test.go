package compute

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// The envelope of the largest clusters Kubernetes supports.
const (
	envNodes     = 5000
	envServices  = 10000
	envEndpoints = 250000
	envZones     = 3
)

// envelope is a generated cluster at the envelope: 10% of services are LoadBalancers with
// externalTrafficPolicy Local, 10% carry zone hints, endpoints sit on random nodes.
type envelope struct {
	nodes    []*model.Node
	services []*model.Service
	slices   []*model.EndpointSlice
}

func newEnvelope() *envelope {
	r := rand.New(rand.NewPCG(7, 7))
	env := &envelope{}
	for i := range envNodes {
		env.nodes = append(env.nodes, &model.Node{Name: fmt.Sprintf("node-%04d", i), Zone: fmt.Sprintf("zone-%d", i%envZones), Ready: true})
	}
	perService := envEndpoints / envServices
	for i := range envServices {
		s := &model.Service{
			Namespace:  fmt.Sprintf("ns-%d", i%100),
			Name:       fmt.Sprintf("svc-%05d", i),
			Type:       model.TypeClusterIP,
			ClusterIPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 96, byte(i >> 8), byte(i)})},
			Ports:      []model.ServicePort{{Name: "http", Protocol: model.TCP, Port: 80}},
		}
		if i%10 == 0 {
			s.Type = model.TypeLoadBalancer
			s.ExternalTrafficLocal = true
			s.Ports[0].NodePort = uint16(30000 + i%2768)
			s.HealthCheckNodePort = uint16(32000 + i%767)
			s.LoadBalancerIngress = []model.LoadBalancerIngress{{IP: netip.AddrFrom4([4]byte{203, 0, byte(i >> 8), byte(i)})}}
		}
		sl := &model.EndpointSlice{
			Namespace: s.Namespace, Name: s.Name + "-1", Service: s.Name, Family: model.IPv4,
			Ports: []model.EndpointPort{{Name: "http", Protocol: model.TCP, Port: 8080}},
		}
		for j := range perService {
			n := r.IntN(envNodes)
			e := model.Endpoint{
				Address:  netip.AddrFrom4([4]byte{10, byte(64 + i>>8), byte(i), byte(j)}),
				Ready:    true,
				Serving:  true,
				NodeName: env.nodes[n].Name,
				Zone:     env.nodes[n].Zone,
			}
			if i%10 == 5 {
				e.ForZones = []string{e.Zone}
			}
			sl.Endpoints = append(sl.Endpoints, e)
		}
		env.services = append(env.services, s)
		env.slices = append(env.slices, sl)
	}
	return env
}

// load builds an engine from scratch. Slices go in before services so each service is computed
// once, with its endpoints.
func (env *envelope) load() *Engine {
	e := NewEngine(Options{})
	for _, n := range env.nodes {
		e.SetNode(n)
	}
	for _, sl := range env.slices {
		e.SetSlice(sl)
	}
	for _, s := range env.services {
		e.SetService(s)
	}
	return e
}

func maxRSSMiB() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Maxrss) / 1024
}

// BenchmarkComputeFull computes every node's state at the envelope from nothing, and then walks
// each node's overrides, the part of its state that is its own.
func BenchmarkComputeFull(b *testing.B) {
	env := newEnvelope()
	runtime.GC()
	var e *Engine
	var seconds float64
	for b.Loop() {
		start := time.Now()
		e = env.load()
		overrides := 0
		for _, n := range env.nodes {
			overrides += e.Overrides(n.Name)
		}
		seconds = time.Since(start).Seconds()
		b.ReportMetric(float64(overrides)/envNodes, "overrides/node")
	}
	fmt.Printf("BENCH compute full nodes=%d services=%d endpoints=%d seconds=%.2f rss_mib=%.0f resources=%d shared=%d\n",
		envNodes, envServices, envEndpoints, seconds, maxRSSMiB(), e.ResourceCount(), len(e.defaults))
}

// BenchmarkComputeChange measures one endpoint turning not ready and back, in a Cluster-policy
// and in a Local-policy service, with the envelope loaded.
func BenchmarkComputeChange(b *testing.B) {
	env := newEnvelope()
	e := env.load()
	for b.Loop() {
		for _, policy := range []string{"cluster", "local"} {
			i := 1 // svc-00001: Cluster policy
			if policy == "local" {
				i = 0 // svc-00000: LoadBalancer, externalTrafficPolicy Local
			}
			orig := env.slices[i]
			flipped := *orig
			flipped.Endpoints = append([]model.Endpoint(nil), orig.Endpoints...)
			flipped.Endpoints[0].Ready = false
			const rounds = 2000
			var nodesChanged, shared int
			start := time.Now()
			for r := range rounds {
				sl := orig
				if r%2 == 0 {
					sl = &flipped
				}
				d := e.SetSlice(sl)
				nodesChanged, shared = len(d.Nodes), len(d.Shared)
			}
			micros := float64(time.Since(start).Microseconds()) / rounds
			fmt.Printf("BENCH compute change policy=%s micros=%.1f nodes_changed=%d shared_changed=%d\n", policy, micros, nodesChanged, shared)
		}
	}
}
