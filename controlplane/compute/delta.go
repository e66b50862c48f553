package compute

import (
	"maps"
	"slices"
)

// Delta says which resource names may resolve differently after a change, layer by layer. A name
// in Shared is dirty for every node, in Zones[z] for the nodes of zone z, in Nodes[n] for node n.
// A consumer resolves each dirty name for its node and compares versions with what the node holds,
// so listing a name that turns out unchanged for some node is harmless; omitting one is a bug.
// A name in DNS is a service's DNS records, dirty for every agent that serves DNS and for no other.
type Delta struct {
	Shared []string
	Zones  map[string][]string
	Nodes  map[string][]string
	DNS    []string
}

// Empty reports whether nothing changed.
func (d *Delta) Empty() bool {
	return len(d.Shared) == 0 && len(d.Zones) == 0 && len(d.Nodes) == 0 && len(d.DNS) == 0
}

// Merge adds o's names to d.
func (d *Delta) Merge(o Delta) {
	d.Shared = append(d.Shared, o.Shared...)
	d.Zones = mergeLayer(d.Zones, o.Zones)
	d.Nodes = mergeLayer(d.Nodes, o.Nodes)
	d.DNS = append(d.DNS, o.DNS...)
}

func mergeLayer(into, from map[string][]string) map[string][]string {
	for k, names := range from {
		if into == nil {
			into = map[string][]string{}
		}
		into[k] = append(into[k], names...)
	}
	return into
}

func (d *Delta) addShared(name string) { d.Shared = append(d.Shared, name) }

func (d *Delta) addZone(zone, name string) {
	d.Zones = mergeLayer(d.Zones, map[string][]string{zone: {name}})
}

func (d *Delta) addNode(node, name string) {
	d.Nodes = mergeLayer(d.Nodes, map[string][]string{node: {name}})
}

// diffLayers records which layer entries of one resource name differ between old and new (either
// may be nil: the resource appears or goes away).
func (d *Delta) diffLayers(name string, old, new *layers) {
	if version(old.get()) != version(new.get()) {
		d.addShared(name)
	}
	for _, z := range unionKeys(old.zones(), new.zones()) {
		if version(old.zones()[z]) != version(new.zones()[z]) {
			d.addZone(z, name)
		}
	}
	for _, n := range unionKeys(old.nodes(), new.nodes()) {
		if version(old.nodes()[n]) != version(new.nodes()[n]) {
			d.addNode(n, name)
		}
	}
}

func (l *layers) get() *Resource {
	if l == nil {
		return nil
	}
	return l.def
}

func (l *layers) zones() map[string]*Resource {
	if l == nil {
		return nil
	}
	return l.byZone
}

func (l *layers) nodes() map[string]*Resource {
	if l == nil {
		return nil
	}
	return l.byNode
}

func version(r *Resource) string {
	if r == nil {
		return ""
	}
	return r.Version
}

func unionKeys(a, b map[string]*Resource) []string {
	if len(a) == 0 && len(b) == 0 {
		return nil
	}
	keys := slices.Collect(maps.Keys(a))
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
