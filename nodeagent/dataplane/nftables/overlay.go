package nftables

import "iter"

// overlay is a map as a plan sees it: the view's map under the plan's own changes. Planning
// writes only to the overlay, so a plan never changes the view; once the kernel confirmed the
// transaction, apply writes the changes through. A refused transaction just drops the overlay.
type overlay[K comparable, V any] struct {
	base map[K]V
	diff map[K]pending[V]
}

// pending is one planned change of an overlay: a new value, or a deletion.
type pending[V any] struct {
	v   V
	del bool
}

func newOverlay[K comparable, V any](base map[K]V) *overlay[K, V] {
	return &overlay[K, V]{base: base}
}

// get returns the value of k as the plan leaves it.
func (o *overlay[K, V]) get(k K) (V, bool) {
	if p, ok := o.diff[k]; ok {
		return p.v, !p.del
	}
	v, ok := o.base[k]
	return v, ok
}

// at returns the value of k, or the zero value.
func (o *overlay[K, V]) at(k K) V {
	v, _ := o.get(k)
	return v
}

func (o *overlay[K, V]) has(k K) bool {
	_, ok := o.get(k)
	return ok
}

func (o *overlay[K, V]) put(k K, v V) {
	if o.diff == nil {
		o.diff = map[K]pending[V]{}
	}
	o.diff[k] = pending[V]{v: v}
}

func (o *overlay[K, V]) del(k K) {
	if o.diff == nil {
		o.diff = map[K]pending[V]{}
	}
	var zero V
	o.diff[k] = pending[V]{v: zero, del: true}
}

// all yields every key and value as the plan leaves them, base first, in no particular order.
func (o *overlay[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k, v := range o.base {
			if _, changed := o.diff[k]; changed {
				continue
			}
			if !yield(k, v) {
				return
			}
		}
		for k, p := range o.diff {
			if !p.del && !yield(k, p.v) {
				return
			}
		}
	}
}

// changed reports whether the plan changes anything here.
func (o *overlay[K, V]) changed() bool { return len(o.diff) > 0 }

// apply writes the planned changes into the base map.
func (o *overlay[K, V]) apply() {
	for k, p := range o.diff {
		if p.del {
			delete(o.base, k)
		} else {
			o.base[k] = p.v
		}
	}
	o.diff = nil
}
