package nftables

import (
	"maps"
	"slices"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftgen"
)

// A drift-repair pass reads the tables for seconds (10,000 services: about 2.5 s) without the
// apply lock, and changes keep committing meanwhile. Dropping such a read would starve the pass
// on a busy node, so the pass watches instead: our commits during the read are recorded, and the
// objects they touched are taken from the view, not from the read. That is exact: a touched
// object is, after a commit the kernel accepted, what the commit made it, whatever it was before.
// If moreover nobody else committed during the read (the generation moved by our commits only),
// the patched read is the kernel's state now.

// watch records our commits while a pass reads without the lock. Under d.mu.
type watch struct {
	// gen is the generation when the watch began, read under the lock.
	gen uint32
	// commits counts our accepted transactions since; ops are their operations per family.
	commits int
	ops     map[*family][]op
}

func newWatch(gen uint32) *watch { return &watch{gen: gen, ops: map[*family][]op{}} }

// record notes an accepted plan.
func (w *watch) record(p *Plan) {
	w.commits++
	for _, fp := range p.fams {
		w.ops[fp.t.f] = append(w.ops[fp.t.f], fp.ops...)
	}
}

// onlyOurs reports whether g, read now, is the generation after our recorded commits alone.
func (w *watch) onlyOurs(g uint32) bool {
	want := w.gen
	for range w.commits {
		want = nftgen.Next(want)
	}
	return g == want
}

// touched returns, in the shape of a dump, the objects the recorded operations of family f
// touched (decoded as a dump is, so each lands under the key the view uses).
func (w *watch) touched(f *family) *kernelState {
	k, _ := readState(opsReader(w.ops[f]), f) // an opsReader never fails
	return k
}

// opsReader reads a family's recorded operations back as if they were a table: the chains, sets
// and elements they touched.
type opsReader []op

func (r opsReader) chains(*family) ([]string, error) {
	return r.names(opAddChain, opFlushChain, opDelChain, opAddRule), nil
}

// names lists, once each, the objects the operations of the kinds named.
func (r opsReader) names(kinds ...opKind) []string {
	seen := map[string]bool{}
	var names []string
	for _, o := range r {
		if slices.Contains(kinds, o.kind) && !seen[o.name] {
			seen[o.name] = true
			names = append(names, o.name)
		}
	}
	return names
}

func (r opsReader) rules(_ *family, fn func(chain, comment string)) error {
	for _, o := range r {
		if o.kind == opAddRule {
			fn(o.name, o.rule.comment())
		}
	}
	return nil
}

func (r opsReader) sets(*family) ([]string, error) {
	return r.names(opAddSet, opDelSet, opAddElems, opDelElems), nil
}

func (r opsReader) elements(_ *family, set string, fn func(e nftables.SetElement, chain string)) error {
	for _, o := range r {
		if (o.kind == opAddElems || o.kind == opDelElems) && o.name == set {
			for _, e := range o.elems {
				chain := ""
				if e.VerdictData != nil {
					chain = e.VerdictData.Chain
				}
				fn(e, chain)
			}
		}
	}
	return nil
}

// touchedSets names the sets whose elements the recorded operations of family f changed. A hash
// set's dump is taken in parts, each skipping as many elements as were sent before, so an element
// added or deleted during the dump shifts the rest: others are missed or repeated (measured: 11
// untouched elements of 100,000 missed while one service's endpoints changed every 20 ms), and
// the kernel does not flag element dumps as interrupted. Such a set's whole dump is replaced by
// the view, and is not verified by this read.
func (w *watch) touchedSets(f *family) map[string]bool {
	sets := map[string]bool{}
	for _, name := range opsReader(w.ops[f]).names(opAddElems, opDelElems, opAddSet, opDelSet) {
		sets[name] = true
	}
	return sets
}

// patch makes a dump hold the view's state of every object in touched, and the view's whole
// content of the element sets in sets; the largest (the data path's sets and the endpoint
// buckets) only if all, since a comparison skips them instead (sameState's skip).
func patch(dump, view, touched *kernelState, sets map[string]bool, all bool) {
	patchMap(dump.chains, view.chains, touched.chains)
	patchMap(dump.ids, view.ids, touched.chains) // a set chain's id is in its rules
	patchMap(dump.sets, view.sets, touched.setNames)
	patchMap(dump.setNames, view.setNames, touched.setNames)
	patchMap(dump.classes, view.classes, touched.classes)
	if all {
		sk := newSkip(sets)
		patchWhere(dump.data, view.data, func(id dataID, _ dataVal) bool { return sk.sets[id.set.name()] })
		patchWhere(dump.ep, view.ep, func(id uint32, _ []nftables.SetElement) bool { return sk.bucket(id) })
	}
	for set, m := range map[string]func(){
		setVIPs:          func() { dump.vips = maps.Clone(view.vips) },
		setNodePorts:     func() { dump.nodeports = maps.Clone(view.nodeports) },
		setClusterIPs:    func() { dump.clusterIPs = maps.Clone(view.clusterIPs) },
		setHairpin:       func() { dump.hairpin = maps.Clone(view.hairpin) },
		setNodePortAddrs: func() { dump.npAddrs = maps.Clone(view.npAddrs) },
	} {
		if sets[set] {
			m()
		}
	}
}

func patchMap[K comparable, V, M any](dump, view map[K]V, touched map[K]M) {
	for k := range touched {
		if v, ok := view[k]; ok {
			dump[k] = v
		} else {
			delete(dump, k)
		}
	}
}

// patchWhere makes dump hold exactly the view's entries for which in says true.
func patchWhere[K comparable, V any](dump, view map[K]V, in func(K, V) bool) {
	maps.DeleteFunc(dump, in)
	for k, v := range view {
		if in(k, v) {
			dump[k] = v
		}
	}
}

// skip names the element sets a comparison passes over: their dump was taken from the view.
type skip struct {
	sets    map[string]bool
	buckets [endpointBuckets]bool
}

func newSkip(sets map[string]bool) *skip {
	sk := &skip{sets: sets}
	for i := range uint32(endpointBuckets) {
		sk.buckets[i] = sets[bucketOf(i)]
	}
	return sk
}

func (sk *skip) bucket(id uint32) bool { return sk != nil && sk.buckets[id%endpointBuckets] }

func (sk *skip) set(name string) bool { return sk != nil && sk.sets[name] }
