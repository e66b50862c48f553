package compute

import (
	"net/netip"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// probeLayers gives each node with endpoints of a health-checked service a ProbeSet of those
// endpoints, whatever their condition: a failing endpoint must go on being probed to come back.
// Nodes without endpoints hold no ProbeSet, so the layer has no default.
func probeLayers(svc *model.Service, slicesOfSvc []*model.EndpointSlice) *layers {
	hc := svc.HealthCheck
	if hc == nil || len(svc.Ports) == 0 {
		return nil
	}
	name := resname.Join(svc.Namespace+"/"+svc.Name, resname.KindProbes)
	check := protoHealthCheck(hc)
	byNode := map[string]*v1.ProbeSet{}
	seen := map[netip.Addr]bool{}
	for _, sl := range slicesOfSvc {
		port, ok := slicePort(sl, svc.Ports[0])
		if !ok {
			continue
		}
		for _, ep := range sl.Endpoints {
			if ep.NodeName == "" || seen[ep.Address] {
				continue
			}
			seen[ep.Address] = true
			ps := byNode[ep.NodeName]
			if ps == nil {
				ps = &v1.ProbeSet{Namespace: svc.Namespace, Service: svc.Name, Check: check}
				byNode[ep.NodeName] = ps
			}
			ps.Targets = append(ps.Targets, &v1.ProbeTarget{Address: ep.Address.String(), Port: uint32(port)})
		}
	}
	if len(byNode) == 0 {
		return nil
	}
	l := &layers{byNode: map[string]*Resource{}}
	for n, ps := range byNode {
		l.byNode[n] = newResource(name, &v1.Resource{Content: &v1.Resource_Probes{Probes: ps}})
	}
	return l
}

func protoHealthCheck(hc *model.HealthCheck) *v1.HealthCheck {
	out := &v1.HealthCheck{
		InitialDelaySeconds: hc.InitialDelaySeconds, PeriodSeconds: hc.PeriodSeconds, TimeoutSeconds: hc.TimeoutSeconds,
		SuccessThreshold: hc.SuccessThreshold, FailureThreshold: hc.FailureThreshold,
	}
	switch hc.Action {
	case model.ProbeHTTPGet:
		out.Action = &v1.HealthCheck_HttpGet{HttpGet: &v1.HTTPGetAction{Path: hc.Path, Port: uint32(hc.Port), Scheme: hc.Scheme}}
	case model.ProbeTCPSocket:
		out.Action = &v1.HealthCheck_TcpSocket{TcpSocket: &v1.TCPSocketAction{Port: uint32(hc.Port)}}
	case model.ProbeExec:
		out.Action = &v1.HealthCheck_Exec{Exec: &v1.ExecAction{Command: hc.Command}}
	}
	return out
}
