package compute

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// DNS records are what a service the dataplane does not proxy still answers by name: a headless
// service its endpoints, an ExternalName service a CNAME. They are kept beside the three layers,
// not in them, because they differ from dataplane state in who receives them: every node sees the
// same records, but only agents that serve DNS are sent them, and the stream decides that per
// connection. ForEach, NodeState and StateSize therefore stay exactly the dataplane's state, and
// ForEachDNS lists the records for the connections that want them.

// dnsRecords computes a service's records, or nil when it has none: a ClusterIP service is
// answered from its ServicePorts, and an ExternalName service naming nothing has nothing to say.
func dnsRecords(svc *model.Service, slicesOfSvc []*model.EndpointSlice) *v1.DNSRecords {
	switch {
	case svc == nil:
		return nil
	case svc.Type == model.TypeExternalName:
		if svc.ExternalName == "" {
			return nil
		}
		return &v1.DNSRecords{Namespace: svc.Namespace, Name: svc.Name, ExternalName: svc.ExternalName}
	case !svc.Headless:
		return nil
	}
	// A headless service with no endpoints still has records: it exists, so its name is not
	// NXDOMAIN, it merely has no address yet.
	return &v1.DNSRecords{
		Namespace: svc.Namespace,
		Name:      svc.Name,
		Endpoints: dnsEndpoints(svc, slicesOfSvc),
		Ports:     dnsPorts(svc, slicesOfSvc),
	}
}

// dnsEndpoints lists a headless service's addresses of both families, sorted by address: the
// ready ones, plus the not-ready ones when the service publishes them. An address listed twice
// (in two slices, or two ports' worth) appears once, keeping a hostname if any copy has one.
func dnsEndpoints(svc *model.Service, slicesOfSvc []*model.EndpointSlice) []*v1.DNSEndpoint {
	type entry struct {
		addr     netip.Addr
		hostname string
	}
	index := map[netip.Addr]int{}
	var out []entry
	for _, sl := range slicesOfSvc {
		for i := range sl.Endpoints {
			ep := &sl.Endpoints[i]
			if !ep.Address.IsValid() || !(ep.Ready || svc.PublishNotReadyAddresses) {
				continue
			}
			if j, dup := index[ep.Address]; dup {
				if out[j].hostname == "" {
					out[j].hostname = ep.Hostname
				}
				continue
			}
			index[ep.Address] = len(out)
			out = append(out, entry{ep.Address, ep.Hostname})
		}
	}
	slices.SortFunc(out, func(a, b entry) int { return a.addr.Compare(b.addr) })
	eps := make([]*v1.DNSEndpoint, len(out))
	for i, e := range out {
		eps[i] = &v1.DNSEndpoint{Address: e.addr.String(), Hostname: e.hostname}
	}
	return eps
}

// dnsPorts lists a headless service's ports sorted by name, then protocol. Each carries the
// endpoints' port, as Kubernetes DNS answers SRV for a headless service (there is no VIP port to
// name): the first slice by name that lists the port decides, and the service's own port stands
// in while no slice does.
func dnsPorts(svc *model.Service, slicesOfSvc []*model.EndpointSlice) []*v1.DNSPort {
	out := make([]*v1.DNSPort, 0, len(svc.Ports))
	for _, p := range svc.Ports {
		port := p.Port
		for _, sl := range slicesOfSvc {
			if tp, ok := slicePort(sl, p); ok {
				port = tp
				break
			}
		}
		out = append(out, &v1.DNSPort{Name: p.Name, Protocol: protoProtocol(p.Protocol), Port: uint32(port)})
	}
	slices.SortFunc(out, func(a, b *v1.DNSPort) int {
		return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.Protocol, b.Protocol))
	})
	return out
}

// recomputeDNS rebuilds one service's records and reports a change in Delta.DNS.
func (e *Engine) recomputeDNS(key model.ServiceKey) Delta {
	name := resname.DNS(key.Namespace, key.Name)
	old := e.dns[name]
	var fresh *Resource
	var rec *v1.DNSRecords
	// Most services have no records: spare them sorting their slices a second time.
	if svc := e.services[key]; svc != nil && (svc.Headless || svc.Type == model.TypeExternalName) {
		rec = dnsRecords(svc, e.sortedSlices(key))
	}
	if rec != nil {
		fresh = newResource(name, &v1.Resource{Content: &v1.Resource_Dns{Dns: rec}})
		e.dns[name] = fresh
	} else {
		delete(e.dns, name)
	}
	if version(old) == version(fresh) {
		return Delta{}
	}
	return Delta{DNS: []string{name}}
}

// ForEachDNS calls fn with every service's DNS records, in no particular order. Every node sees
// the same records; only agents that serve DNS should be sent them.
func (e *Engine) ForEachDNS(fn func(*Resource)) {
	for _, r := range e.dns {
		fn(r)
	}
}

// DNSCount returns the number of services with DNS records.
func (e *Engine) DNSCount() int { return len(e.dns) }
