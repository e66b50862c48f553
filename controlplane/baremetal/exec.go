package baremetal

import (
	"fmt"
	"slices"
	"sort"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ganglion-proxy/ganglion/store"
)

// execCommand is the program a service's exec check runs, or "" when it has none.
func execCommand(s *Service) string {
	if hc := s.Spec.HealthCheck; hc != nil && hc.Exec != nil && len(hc.Exec.Command) > 0 {
		return hc.Exec.Command[0]
	}
	return ""
}

// execRefused says why node's agent would not run cmd, or "" when it would. Agents run exec
// checks as root, so they run none unless an operator listed the command on the agent; the
// agent says which in its registration.
func (w *world) execRefused(node, cmd string) string {
	l, ok := w.leases[node]
	switch {
	case !ok:
		return fmt.Sprintf("node %s has no registered agent: exec checks run only on agents that allow them (agent flag --exec-allow)", node)
	case !slices.Contains(l.ExecCommands, cmd):
		return fmt.Sprintf("node %s's agent does not allow exec checks of %s (agent flag --exec-allow)", node, cmd)
	}
	return ""
}

// checkExec refuses an exec check that a node probing one of the service's endpoints would not
// run: when the service is applied, on its command; when a slice adds endpoints to such a
// service, on the endpoint's node. Endpoints without a node are probed by no agent.
func (w *world) checkExec() error {
	cur := w.current()
	for _, o := range w.applied {
		switch {
		case o.Service != nil && execCommand(o.Service) != "":
			cmd := execCommand(o.Service)
			for _, n := range probingNodes(o.Service, cur) {
				if why := w.execRefused(n, cmd); why != "" {
					return o.fail("spec.healthCheck.exec.command[0]", "%s", why)
				}
			}
		case o.Slice != nil:
			svc := cur[store.Key{Kind: KindService, Namespace: o.Key.Namespace, Name: o.Slice.Labels[discoveryv1.LabelServiceName]}]
			if svc == nil || execCommand(svc.Service) == "" {
				continue
			}
			for i, ep := range o.Slice.Endpoints {
				if ep.NodeName == nil || *ep.NodeName == "" {
					continue
				}
				if why := w.execRefused(*ep.NodeName, execCommand(svc.Service)); why != "" {
					return o.fail(fmt.Sprintf("endpoints[%d].nodeName", i), "%s, and %s's exec check would run there", why, svc)
				}
			}
		}
	}
	return nil
}

// probingNodes are the nodes whose agents probe s's endpoints: its backends' and those of the
// endpoint slices naming it, in cur.
func probingNodes(s *Service, cur map[store.Key]*Object) []string {
	set := map[string]bool{}
	for _, b := range s.Spec.Backends {
		set[b.Node] = true
	}
	for _, o := range cur {
		if o.Slice == nil || o.Key.Namespace != s.Metadata.Namespace || o.Slice.Labels[discoveryv1.LabelServiceName] != s.Metadata.Name {
			continue
		}
		for _, ep := range o.Slice.Endpoints {
			if ep.NodeName != nil {
				set[*ep.NodeName] = true
			}
		}
	}
	delete(set, "")
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
