package compute

import (
	"slices"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// ExplainAnnouncements says, for each outside address of the service the options announce,
// whether node attracts it, which node owns it for ARP/NDP, and why node does not attract it.
func (e *Engine) ExplainAnnouncements(node string, key model.ServiceKey) []*v1.AddressAnnouncement {
	svc := e.services[key]
	if svc == nil || IgnoredReason(svc, e.opts) != "" {
		return nil
	}
	addrs := e.opts.Announce.announced(svc)
	if len(addrs) == 0 {
		return nil
	}
	name := resname.Announce(key.Namespace, key.Name)
	mine := e.Resolve(node, name).GetMsg().GetAnnouncement()
	owners := map[string]string{}
	for n := range e.byNode {
		for _, ip := range e.byNode[n][name].GetMsg().GetAnnouncement().GetL2() {
			owners[ip] = n
		}
	}
	withReady := readyEndpointNodes(e.sortedSlices(key))
	out := make([]*v1.AddressAnnouncement, 0, len(addrs))
	for _, a := range addrs {
		ip := a.ip.String()
		x := &v1.AddressAnnouncement{Address: ip, Bgp: slices.Contains(mine.GetBgp(), ip), L2: slices.Contains(mine.GetL2(), ip), L2Owner: owners[ip]}
		if !x.Bgp && !x.L2 {
			x.Reason = e.notAnnouncedReason(node, svc, a, withReady[model.FamilyOf(a.ip)])
		}
		out = append(out, x)
	}
	return out
}

func (e *Engine) notAnnouncedReason(node string, svc *model.Service, a announcedAddr, withReady map[string]bool) string {
	n := e.nodes[node]
	policy := "externalTrafficPolicy"
	if slices.Contains(svc.ClusterIPs, a.ip) {
		policy = "internalTrafficPolicy"
	}
	switch {
	case n == nil:
		return "the brain does not know this node"
	case !n.Ready:
		return "node not ready"
	case !n.Live:
		return "no agent of this node is connected"
	case len(withReady) == 0:
		return "no ready endpoint of its family anywhere: not attracted"
	case a.local && !withReady[node]:
		return policy + " Local: no ready endpoint on this node"
	case !e.opts.Announce.BGP:
		return "another node owns it for ARP/NDP"
	}
	return "not eligible"
}
