package compute

import (
	"errors"
	"fmt"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// ErrNotFound is returned for a service the engine does not know.
var ErrNotFound = errors.New("not found")

// Explain says, for each port of a service as node sees it, which endpoints carry internal and
// external traffic and, for every other endpoint, why not.
func (e *Engine) Explain(node string, key model.ServiceKey) ([]*v1.PortExplanation, error) {
	svc := e.services[key]
	if svc == nil {
		return nil, fmt.Errorf("service %s: %w", key, ErrNotFound)
	}
	if why := IgnoredReason(svc, e.opts); why != "" {
		return []*v1.PortExplanation{{IgnoredReason: why}}, nil
	}
	zone := e.zoneOf(node)
	var out []*v1.PortExplanation
	for _, port := range svc.Ports {
		for _, ip := range svc.ClusterIPs {
			fam := model.FamilyOf(ip)
			base := PortBase(key, port.Name, fam)
			r := e.Resolve(node, resname.Join(base, resname.KindService))
			if r == nil {
				continue
			}
			pv := e.portView(node, base, r)
			// A copy: the engine shares its messages between nodes and replaces them on changes.
			svcCopy := proto.Clone(pv.Service).(*v1.ServicePort)
			pe := &v1.PortExplanation{Resource: base, Service: svcCopy, Internal: pv.Set(pv.Service.Internal)}
			if pv.Service.External != nil {
				pe.External = pv.Set(pv.Service.External)
			}
			ts := targetsFor(e.sortedSlices(key), port, fam)
			for _, t := range ts {
				ex := &v1.EndpointExplanation{
					Address:  t.Address.String(),
					Port:     uint32(t.Port),
					Internal: inSet(pe.Internal, t),
					External: pe.External != nil && inSet(pe.External, t),
				}
				var reasons []string
				if !ex.Internal {
					reasons = append(reasons, whyNot(t, ts, pv.Service.Internal.Scope, node, zone))
				}
				if pe.External != nil && !ex.External {
					reasons = append(reasons, "external: "+whyNot(t, ts, pv.Service.External.Scope, node, zone))
				}
				ex.Reason = strings.Join(reasons, "; ")
				pe.Endpoints = append(pe.Endpoints, ex)
			}
			out = append(out, pe)
		}
	}
	// An address no node programs by design is named alone in an explanation, like a service not
	// proxied at all, so that "ignored by design" is told apart from "lost".
	for _, why := range UnproxiedAddresses(svc) {
		out = append(out, &v1.PortExplanation{IgnoredReason: why})
	}
	return out, nil
}

func inSet(set *v1.EndpointSet, t target) bool {
	addr := t.Address.String()
	for _, b := range set.GetBackends() {
		if b.Address == addr && b.Port == uint32(t.Port) {
			return true
		}
	}
	return false
}

// whyNot explains why t is not in the set scope names for node, mirroring clusterSet and localSet.
func whyNot(t target, ts []target, scope v1.EndpointScope, node, zone string) string {
	switch {
	case !t.usable() && t.Terminating:
		return "terminating and no longer serving"
	case !t.usable() && t.NotReadyReason != "":
		return "not ready: " + t.NotReadyReason
	case !t.usable():
		return "not ready"
	case scope == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL && t.NodeName != node:
		return fmt.Sprintf("on node %q, not this one (traffic policy Local)", t.NodeName)
	case scope == v1.EndpointScope_ENDPOINT_SCOPE_LOCAL:
		return "terminating, and a ready endpoint on this node is used instead"
	case !t.Ready:
		return "terminating, and ready endpoints are used instead"
	}
	ready := filter(ts, func(t target) bool { return t.Ready })
	if hintedFor(ready, node, func(t target) []string { return t.ForNodes }) {
		return fmt.Sprintf("topology: hinted for nodes %v, not %s", t.ForNodes, node)
	}
	return fmt.Sprintf("topology: hinted for zones %v, not %s", t.ForZones, zone)
}
