package brain_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/brain"
	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/internal/resname"
)

// The fan-out workload of BenchmarkFanout and BenchmarkTLSReconnect: the agents' own nodes
// in four zones, and 10,000 services of ten endpoints each, spread over those very nodes. Every
// tenth service is NodePort with externalTrafficPolicy Local (each node with one of its endpoints
// holds a local set of its own), every tenth carries zone hints (each zone holds a cluster set of
// its own), the rest are ClusterIP with Cluster policy: a change touches shared, per-zone or
// per-node resources, as in a cluster.
// fanAgents is how many agents and nodes: 1,000, or 5,000 for BenchmarkFanout5000 (withFanAgents).
var fanAgents = 1000

// withFanAgents sets the workload's number of agents and nodes; the returned func restores it.
func withFanAgents(n int) func() {
	old := fanAgents
	fanAgents = n
	return func() { fanAgents = old }
}

const (
	fanServices  = 10000
	fanEndpoints = 10 // per service
	fanZones     = 4
	fanChanges   = 1000 // measured changes, one after another: the latency samples
	fanAway      = 100  // services changed while agents are away: 1%
)

// fanKind is how a service of the workload routes.
type fanKind int

const (
	kindCluster  fanKind = iota // ClusterIP, Cluster policy
	kindLocal                   // NodePort, externalTrafficPolicy Local
	kindTopology                // ClusterIP, every endpoint hinted for its own zone
)

func fanKindOf(i int) fanKind {
	switch i % 10 {
	case 0:
		return kindLocal
	case 1:
		return kindTopology
	}
	return kindCluster
}

// fanShare is the share of the workload's services of kind k, counted rather than assumed, for
// the BENCH lines.
func fanShare(k fanKind) float64 {
	n := 0
	for i := range fanServices {
		if fanKindOf(i) == k {
			n++
		}
	}
	return float64(n) / fanServices
}

// fanNodeOf is the node of endpoint slot j of service i: slots 0..fanEndpoints-1 hold the initial
// endpoints, and endpoint 0 moves to slot fanEndpoints. The slots of a service are on distinct
// nodes (101 is prime to 1,000) and in every zone ((i+j) mod 4), and services of every kind
// cover all nodes.
func fanNodeOf(i, slot int) int { return (i*761 + slot*101) % fanAgents }

func fanZone(node int) string { return fmt.Sprintf("zone-%d", node%fanZones) }

// fanService is service i of the workload.
func fanService(i int) *model.Service {
	svc := testService(i)
	if fanKindOf(i) == kindLocal {
		svc.Type, svc.ExternalTrafficLocal = model.TypeNodePort, true
		svc.Ports[0].NodePort = uint16(30000 + i/10)
		svc.HealthCheckNodePort = uint16(31000 + i/10)
	}
	return svc
}

// fanSlice is service i's endpoints; moved replaces endpoint 0 by a pod with a new address on
// another node, in another zone (slot fanEndpoints): a pod rescheduled.
func fanSlice(i int, moved bool) *model.EndpointSlice {
	sl := testSlice(i, fanEndpoints+1, 0) // the extra endpoint is where endpoint 0 moves
	extra := sl.Endpoints[fanEndpoints]
	sl.Endpoints = sl.Endpoints[:fanEndpoints]
	for j := range sl.Endpoints {
		ep, slot := &sl.Endpoints[j], j
		if moved && j == 0 {
			*ep, slot = extra, fanEndpoints
		}
		n := fanNodeOf(i, slot)
		ep.NodeName, ep.Zone = simNode(n), fanZone(n)
		if fanKindOf(i) == kindTopology {
			ep.ForZones = []string{ep.Zone}
		}
	}
	return sl
}

// fanChanged is service number c of a change set: one service in ten, at a position that cycles
// so that each kind has its share of the changes; sets of different shifts are disjoint.
func fanChanged(c, shift int) int { return c*10 + (c+shift)%10 }

// fanAwaySet is the 1% of services that change while agents are away: disjoint from the
// measured changes (shift 0).
func fanAwaySet() []int {
	out := make([]int, fanAway)
	for c := range out {
		out[c] = fanChanged(c, 5)
	}
	return out
}

// fanNames are the resource names of service i's port.
func fanNames(i int) []string {
	base := compute.PortBase(model.ServiceKey{Namespace: "default", Name: fmt.Sprintf("svc-%d", i)}, "http", model.IPv4)
	names := []string{resname.Join(base, resname.KindService), resname.Join(base, resname.KindCluster)}
	if fanKindOf(i) == kindLocal {
		names = append(names, resname.Join(base, resname.KindLocal))
	}
	return names
}

// simDeadAgentAfter is how long the brain lets a simulated agent's connection stay silent: a
// thousand agents sharing two cores with the brain can take seconds to answer a ping, where a
// node's agent has the node's cores (production: grpcopts.DeadAgentAfter).
const simDeadAgentAfter = time.Minute

// fanoutBrain is a brain holding the workload, synced, with the given authentication; the
// services in moved have their endpoint 0 moved already (a brain that has read further).
func fanoutBrain(b testing.TB, authCfg auth.Config, moved ...int) *brain.Brain {
	b.Helper()
	br, err := brain.New(brain.Options{Log: quiet, Stream: stream.Options{StallTimeout: 5 * time.Minute}, Auth: authCfg,
		DeadAgentAfter: simDeadAgentAfter})
	if err != nil {
		b.Fatal(err)
	}
	isMoved := map[int]bool{}
	for _, i := range moved {
		isMoved[i] = true
	}
	br.Hub.Apply(time.Time{}, 1, func(e *compute.Engine) compute.Delta {
		for n := range fanAgents {
			e.SetNode(&model.Node{Name: simNode(n), Zone: fanZone(n), Ready: true})
		}
		for i := range fanServices {
			e.SetSlice(fanSlice(i, isMoved[i]))
			e.SetService(fanService(i))
		}
		return compute.Delta{} // no agent is connected yet
	})
	br.MarkSynced()
	return br
}

// moveServices moves endpoint 0 of each service, in one change, and returns what the engine
// says changed.
func moveServices(br *brain.Brain, services ...int) compute.Delta {
	var d compute.Delta
	br.Hub.Apply(time.Time{}, 0, func(e *compute.Engine) compute.Delta {
		for _, i := range services {
			d.Merge(e.SetSlice(fanSlice(i, true)))
		}
		return d
	})
	return d
}

// fanoutNodes are the simulated agents' node names, each with a certificate of its own.
func fanoutNodes() []string {
	nodes := make([]string, fanAgents)
	for i := range nodes {
		nodes[i] = simNode(i)
	}
	return nodes
}
