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
// externalTrafficPolicy Local, 10% carry zone hints, endpoints sit on random nodes and are ready.
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

// BenchmarkComputeLoad computes the brain's whole state at the envelope from nothing: every
// resource of every layer, hashed and encoded once. It does not assemble any node's state (see
// BenchmarkComputeMaterialise). The line is printed only once the layers hold what the envelope
// implies, counted from the generated model rather than from the engine.
func BenchmarkComputeLoad(b *testing.B) {
	env := newEnvelope()
	runtime.GC()
	var e *Engine
	var seconds float64
	for b.Loop() {
		start := time.Now()
		e = env.load()
		seconds = time.Since(start).Seconds()
	}
	if err := env.checkLayers(e); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("BENCH compute load nodes=%d services=%d endpoints=%d seconds=%.2f rss_mib=%.0f resources=%d shared=%d\n",
		envNodes, envServices, envEndpoints, seconds, maxRSSMiB(), e.ResourceCount(), e.StateSize())
}

// checkLayers compares the engine's layers with what the envelope implies: a service and a
// cluster set per service plus a local set per ETP Local service in the defaults; per zone, a
// cluster set for each hinted service with a ready endpoint hinted there; per node, a local set for
// each ETP Local service with an endpoint on it.
func (env *envelope) checkLayers(e *Engine) error {
	wantZones, wantNodes := map[string]int{}, map[string]int{}
	locals := 0
	for i, sl := range env.slices {
		zones, nodes := map[string]bool{}, map[string]bool{}
		for _, ep := range sl.Endpoints {
			for _, z := range ep.ForZones {
				zones[z] = true
			}
			nodes[ep.NodeName] = true
		}
		for z := range zones {
			wantZones[z]++
		}
		if env.services[i].ExternalTrafficLocal {
			locals++
			for n := range nodes {
				wantNodes[n]++
			}
		}
	}
	if want := 2*envServices + locals; e.StateSize() != want {
		return fmt.Errorf("%d shared resources, want %d", e.StateSize(), want)
	}
	for z, want := range wantZones {
		if got := len(e.byZone[z]); got != want {
			return fmt.Errorf("zone %s overrides %d resources, want %d", z, got, want)
		}
	}
	for n, want := range wantNodes {
		if got := len(e.byNode[n]); got != want {
			return fmt.Errorf("node %s overrides %d resources, want %d", n, got, want)
		}
	}
	if len(e.byZone) != len(wantZones) || len(e.byNode) != len(wantNodes) {
		return fmt.Errorf("%d zones and %d nodes have overrides, want %d and %d", len(e.byZone), len(e.byNode), len(wantZones), len(wantNodes))
	}
	return nil
}
