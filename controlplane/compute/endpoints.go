package compute

import (
	"cmp"
	"net/netip"
	"slices"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// target is an endpoint resolved to the target port of one service port.
type target struct {
	*model.Endpoint
	Port uint16
}

func (t target) usable() bool { return t.Ready || (t.Serving && t.Terminating) }

func (t target) servingTerminating() bool { return t.Serving && t.Terminating }

// targetsFor collects the endpoints of one service port in one family from the service's slices,
// resolving each slice's port by the service port's name (named target ports differ per slice).
// An address:port that appears twice keeps its non-terminating copy. The result is sorted by
// address and port; slices must be sorted by name so that ties resolve the same everywhere.
func targetsFor(slicesOfSvc []*model.EndpointSlice, port model.ServicePort, fam model.Family) []target {
	type key struct {
		addr netip.Addr
		port uint16
	}
	index := map[key]int{}
	var out []target
	for _, sl := range slicesOfSvc {
		if sl.Family != fam {
			continue
		}
		tp, ok := slicePort(sl, port)
		if !ok {
			continue
		}
		for i := range sl.Endpoints {
			ep := &sl.Endpoints[i]
			if !ep.Address.IsValid() || model.FamilyOf(ep.Address) != fam {
				continue
			}
			k := key{ep.Address, tp}
			if j, dup := index[k]; dup {
				if out[j].Terminating && !ep.Terminating {
					out[j] = target{ep, tp}
				}
				continue
			}
			index[k] = len(out)
			out = append(out, target{ep, tp})
		}
	}
	slices.SortFunc(out, func(a, b target) int {
		if c := a.Address.Compare(b.Address); c != 0 {
			return c
		}
		return cmp.Compare(a.Port, b.Port)
	})
	return out
}

func slicePort(sl *model.EndpointSlice, port model.ServicePort) (uint16, bool) {
	for _, p := range sl.Ports {
		if p.Name == port.Name && p.Protocol == port.Protocol && p.Port != 0 {
			return p.Port, true
		}
	}
	return 0, false
}
