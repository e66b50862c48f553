package compute

import (
	"cmp"
	"maps"
	"slices"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/internal/resname"
)

// Engine holds the model and every node's desired state, and keeps the state current as the model
// changes: each change recomputes only the service or node it touches and returns a Delta. An Engine
// is not safe for concurrent use; it takes ownership of the values it is given.
type Engine struct {
	opts       Options
	services   map[model.ServiceKey]*model.Service
	slices     map[model.ServiceKey]map[model.SliceKey]*model.EndpointSlice
	sliceOwner map[model.SliceKey]model.ServiceKey
	nodes      map[string]*model.Node
	outputs    map[model.ServiceKey]map[string]*layers

	// The three layers of state (see the package comment).
	defaults map[string]*Resource
	byZone   map[string]map[string]*Resource
	byNode   map[string]map[string]*Resource
	// dns holds DNS records by name, beside the layers (see dns.go).
	dns map[string]*Resource
}

// NewEngine returns an empty engine.
func NewEngine(opts Options) *Engine {
	return &Engine{
		opts:       opts,
		services:   map[model.ServiceKey]*model.Service{},
		slices:     map[model.ServiceKey]map[model.SliceKey]*model.EndpointSlice{},
		sliceOwner: map[model.SliceKey]model.ServiceKey{},
		nodes:      map[string]*model.Node{},
		outputs:    map[model.ServiceKey]map[string]*layers{},
		defaults:   map[string]*Resource{},
		byZone:     map[string]map[string]*Resource{},
		byNode:     map[string]map[string]*Resource{},
		dns:        map[string]*Resource{},
	}
}

// SetService adds or replaces a service.
func (e *Engine) SetService(svc *model.Service) Delta {
	e.services[svc.Key()] = svc
	return e.recompute(svc.Key())
}

// DeleteService removes a service; its endpoint slices are kept for a service of the same name.
func (e *Engine) DeleteService(key model.ServiceKey) Delta {
	delete(e.services, key)
	return e.recompute(key)
}

// SetSlice adds or replaces an endpoint slice.
func (e *Engine) SetSlice(sl *model.EndpointSlice) Delta {
	key, owner := sl.Key(), sl.ServiceKey()
	var d Delta
	if prev, ok := e.sliceOwner[key]; ok && prev != owner {
		d = e.DeleteSlice(key)
	}
	if e.slices[owner] == nil {
		e.slices[owner] = map[model.SliceKey]*model.EndpointSlice{}
	}
	e.slices[owner][key] = sl
	e.sliceOwner[key] = owner
	d.Merge(e.recompute(owner))
	return d
}

// DeleteSlice removes an endpoint slice.
func (e *Engine) DeleteSlice(key model.SliceKey) Delta {
	owner, ok := e.sliceOwner[key]
	if !ok {
		return Delta{}
	}
	delete(e.sliceOwner, key)
	delete(e.slices[owner], key)
	if len(e.slices[owner]) == 0 {
		delete(e.slices, owner)
	}
	return e.recompute(owner)
}

// SetNode adds or replaces a node. Only its zone matters to compute.
func (e *Engine) SetNode(n *model.Node) Delta {
	before, was := e.zoneOf(n.Name), e.nodes[n.Name]
	e.nodes[n.Name] = n
	return e.nodeMoved(n.Name, before, was)
}

// DeleteNode forgets a node. An agent of that name still resolves, as a node in no zone.
func (e *Engine) DeleteNode(name string) Delta {
	before, was := e.zoneOf(name), e.nodes[name]
	delete(e.nodes, name)
	return e.nodeMoved(name, before, was)
}

// nodeMoved reports what changed when node was replaced: its zone's resources, its BGP peering,
// and the announcements when it started or stopped being able to announce.
func (e *Engine) nodeMoved(node, zoneBefore string, was *model.Node) Delta {
	d := e.zoneMoved(node, zoneBefore)
	if e.opts.Announce.enabled() {
		d.Merge(e.setNodeBGP(node))
		if announceChanged(was, e.nodes[node]) {
			d.Merge(e.reannounce())
		}
	}
	return d
}

// zoneMoved reports the names whose resolution for node changed when it left zone before.
func (e *Engine) zoneMoved(node, before string) Delta {
	after := e.zoneOf(node)
	if before == after {
		return Delta{}
	}
	var d Delta
	for _, name := range unionKeys(e.byZone[before], e.byZone[after]) {
		if e.resolveIn(node, before, name) != e.resolveIn(node, after, name) {
			d.addNode(node, name)
		}
	}
	return d
}

func (e *Engine) zoneOf(node string) string {
	if n := e.nodes[node]; n != nil {
		return n.Zone
	}
	return ""
}

// Resolve returns the resource of that name as node sees it, or nil.
func (e *Engine) Resolve(node, name string) *Resource {
	return e.resolveIn(node, e.zoneOf(node), name)
}

func (e *Engine) resolveIn(node, zone, name string) *Resource {
	if r := e.byNode[node][name]; r != nil {
		return r
	}
	if r := e.byZone[zone][name]; r != nil {
		return r
	}
	if r := e.defaults[name]; r != nil {
		return r
	}
	return e.dns[name]
}

// Zone returns the zone of a node, "" when the node or its zone is unknown.
func (e *Engine) Zone(node string) string { return e.zoneOf(node) }

// Overridden reports whether node sees name through its own or its zone's layer rather than the
// defaults: such a node is unaffected when only the default changes.
func (e *Engine) Overridden(node, zone, name string) bool {
	return e.byNode[node][name] != nil || e.byZone[zone][name] != nil
}

// NodeOverridden reports whether node has a resource of its own, not its zone's, for name.
func (e *Engine) NodeOverridden(node, name string) bool { return e.byNode[node][name] != nil }

// ForEach calls fn with every resource node holds, in no particular order.
func (e *Engine) ForEach(node string, fn func(*Resource)) {
	zone := e.zoneOf(node)
	for name, r := range e.defaults {
		if o := e.byNode[node][name]; o != nil {
			r = o
		} else if o := e.byZone[zone][name]; o != nil {
			r = o
		}
		fn(r)
	}
	// Resources with no default (probe sets) exist only for the nodes that have one.
	for name, r := range e.byNode[node] {
		if e.defaults[name] == nil {
			fn(r)
		}
	}
}

// NodeState returns every resource node holds, sorted by name.
func (e *Engine) NodeState(node string) []*Resource {
	out := make([]*Resource, 0, len(e.defaults)+len(e.byNode[node]))
	e.ForEach(node, func(r *Resource) { out = append(out, r) })
	slices.SortFunc(out, func(a, b *Resource) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// Overrides counts the resources in which node differs from the defaults, through its zone or itself.
func (e *Engine) Overrides(node string) int {
	n := len(e.byNode[node])
	for name := range e.byZone[e.zoneOf(node)] {
		if e.byNode[node][name] == nil {
			n++
		}
	}
	return n
}

// StateSize returns the number of resources every node holds.
func (e *Engine) StateSize() int { return len(e.defaults) }

// ResourceCount returns the number of distinct resources held across all layers.
func (e *Engine) ResourceCount() int {
	n := len(e.defaults)
	for _, m := range e.byZone {
		n += len(m)
	}
	for _, m := range e.byNode {
		n += len(m)
	}
	return n
}

// Service returns a service by key.
func (e *Engine) Service(key model.ServiceKey) *model.Service { return e.services[key] }

// Options returns the engine's options.
func (e *Engine) Options() Options { return e.opts }

// Nodes returns the known node names, sorted.
func (e *Engine) Nodes() []string { return slices.Sorted(maps.Keys(e.nodes)) }

// recompute rebuilds one service's outputs, swaps them into the layers and reports what changed.
func (e *Engine) recompute(key model.ServiceKey) Delta {
	oldByName := e.outputs[key]
	var freshByName map[string]*layers
	if svc := e.services[key]; svc != nil && IgnoredReason(svc, e.opts) == "" {
		sorted := e.sortedSlices(key)
		freshByName = buildService(svc, sorted)
		if a := e.announceLayers(svc, sorted); a != nil {
			freshByName[resname.Announce(key.Namespace, key.Name)] = a
		}
	}
	if len(freshByName) == 0 {
		delete(e.outputs, key)
	} else {
		e.outputs[key] = freshByName
	}
	var d Delta
	for name, l := range oldByName {
		d.diffLayers(name, l, freshByName[name])
		e.unplace(name, l)
	}
	for name, l := range freshByName {
		if oldByName[name] == nil {
			d.diffLayers(name, nil, l)
		}
		e.place(name, l)
	}
	d.Merge(e.recomputeDNS(key))
	return d
}

func (e *Engine) sortedSlices(key model.ServiceKey) []*model.EndpointSlice {
	out := slices.Collect(maps.Values(e.slices[key]))
	slices.SortFunc(out, func(a, b *model.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

func (e *Engine) place(name string, l *layers) {
	if l.def != nil {
		e.defaults[name] = l.def
	}
	for z, r := range l.byZone {
		if e.byZone[z] == nil {
			e.byZone[z] = map[string]*Resource{}
		}
		e.byZone[z][name] = r
	}
	for n, r := range l.byNode {
		if e.byNode[n] == nil {
			e.byNode[n] = map[string]*Resource{}
		}
		e.byNode[n][name] = r
	}
}

func (e *Engine) unplace(name string, l *layers) {
	delete(e.defaults, name)
	for z := range l.byZone {
		delete(e.byZone[z], name)
		if len(e.byZone[z]) == 0 {
			delete(e.byZone, z)
		}
	}
	for n := range l.byNode {
		delete(e.byNode[n], name)
		if len(e.byNode[n]) == 0 {
			delete(e.byNode, n)
		}
	}
}
