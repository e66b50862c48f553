package compute

import "slices"

// clusterSet is the cluster set of a node in a zone (semantics.md, "The cluster set"). Topology
// mode is decided by ready endpoints only; an empty result falls back to serving-and-terminating
// endpoints, ignoring topology. An empty node or zone never matches a hint.
func clusterSet(ts []target, node, zone string) []target {
	ready := filter(ts, func(t target) bool { return t.Ready })
	if len(ready) == 0 {
		return filter(ts, target.servingTerminating)
	}
	if node != "" && hintedFor(ready, node, func(t target) []string { return t.ForNodes }) {
		return filter(ready, func(t target) bool { return slices.Contains(t.ForNodes, node) })
	}
	if zone != "" && hintedFor(ready, zone, func(t target) []string { return t.ForZones }) {
		return filter(ready, func(t target) bool { return slices.Contains(t.ForZones, zone) })
	}
	return ready
}

// hintedFor reports whether every ready endpoint carries hints of one kind and some hint names key.
func hintedFor(ready []target, key string, hints func(target) []string) bool {
	return allHave(ready, hints) && slices.ContainsFunc(ready, func(t target) bool { return slices.Contains(hints(t), key) })
}

// localSet is a node's local set (semantics.md, "The local set"): its ready endpoints, else its
// serving-and-terminating ones. Hints never apply.
func localSet(ts []target, node string) []target {
	if node == "" {
		return nil
	}
	local := filter(ts, func(t target) bool { return t.NodeName == node })
	if ready := filter(local, func(t target) bool { return t.Ready }); len(ready) > 0 {
		return ready
	}
	return filter(local, target.servingTerminating)
}

// hasAny reports whether some endpoint anywhere is usable.
func hasAny(ts []target) bool { return slices.ContainsFunc(ts, target.usable) }

func filter(ts []target, keep func(target) bool) []target {
	var out []target
	for _, t := range ts {
		if keep(t) {
			out = append(out, t)
		}
	}
	return out
}

// layeredSets holds a set as every node sees it: a default, and the zones and nodes that see
// something else. Keys are only those a hint or an endpoint names, so it is small.
type layeredSets struct {
	def    []target
	byZone map[string][]target
	byNode map[string][]target
}

// clusterLayers evaluates clusterSet for every distinct kind of node: a node that no hint names,
// each hinted zone, and each hinted node (which wins over its zone). Hints of a kind count only
// when every ready endpoint has them; otherwise that layer would repeat the default, or, for nodes,
// wrongly hide their zone's set.
func clusterLayers(ts []target) layeredSets {
	l := layeredSets{def: clusterSet(ts, "", "")}
	ready := filter(ts, func(t target) bool { return t.Ready })
	if len(ready) == 0 {
		return l
	}
	if allHave(ready, func(t target) []string { return t.ForZones }) {
		for _, t := range ready {
			for _, z := range t.ForZones {
				if _, done := l.byZone[z]; !done && z != "" {
					l.byZone = setKey(l.byZone, z, clusterSet(ts, "", z))
				}
			}
		}
	}
	if allHave(ready, func(t target) []string { return t.ForNodes }) {
		for _, t := range ready {
			for _, n := range t.ForNodes {
				if _, done := l.byNode[n]; !done && n != "" {
					l.byNode = setKey(l.byNode, n, clusterSet(ts, n, ""))
				}
			}
		}
	}
	return l
}

func allHave(ts []target, hints func(target) []string) bool {
	return !slices.ContainsFunc(ts, func(t target) bool { return len(hints(t)) == 0 })
}

// localLayers evaluates localSet for every node with a usable endpoint; every other node's local
// set is empty.
func localLayers(ts []target) layeredSets {
	var l layeredSets
	for _, t := range ts {
		if _, done := l.byNode[t.NodeName]; !done && t.NodeName != "" && t.usable() {
			l.byNode = setKey(l.byNode, t.NodeName, localSet(ts, t.NodeName))
		}
	}
	return l
}

func setKey(m map[string][]target, k string, v []target) map[string][]target {
	if m == nil {
		m = map[string][]target{}
	}
	m[k] = v
	return m
}
