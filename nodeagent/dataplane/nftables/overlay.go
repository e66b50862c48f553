package nftables

import "iter"

// overlay is a map as a plan sees it: the view's map under the plan's own changes. Planning
// writes only to the overlay, so a plan never changes the view; once the kernel confirmed the
// transaction, apply writes the changes through. A refused transaction just drops the overlay.
type overlay[K comparable, V any] struct {
	// base points at the view's map, so apply can hand it the plan's map whole when it was
	// empty (an agent's first full sync: no copy of hundreds of thousands of elements).
	base *map[K]V
	set  map[K]V
	gone map[K]struct{}
}

func newOverlay[K comparable, V any](base *map[K]V) overlay[K, V] {
	return overlay[K, V]{base: base}
}

// get returns the value of k as the plan leaves it.
func (o *overlay[K, V]) get(k K) (V, bool) {
	if v, ok := o.set[k]; ok {
		return v, true
	}
	if _, ok := o.gone[k]; ok {
		var zero V
		return zero, false
	}
	v, ok := (*o.base)[k]
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

// reserve sizes the plan's map for about n changes before the first one, so a port's changes
// do not grow it step by step.
func (o *overlay[K, V]) reserve(n int) {
	if o.set == nil {
		o.set = make(map[K]V, n)
	}
}

func (o *overlay[K, V]) put(k K, v V) {
	if o.set == nil {
		o.set = map[K]V{}
	}
	if len(o.gone) > 0 {
		delete(o.gone, k)
	}
	o.set[k] = v
}

func (o *overlay[K, V]) del(k K) {
	if o.gone == nil {
		o.gone = map[K]struct{}{}
	}
	delete(o.set, k)
	o.gone[k] = struct{}{}
}

// all yields every key and value as the plan leaves them, base first, in no particular order.
func (o *overlay[K, V]) all() iter.Seq2[K, V] {
	return func(yield func(K, V) bool) {
		for k, v := range *o.base {
			if _, changed := o.set[k]; changed {
				continue
			}
			if _, deleted := o.gone[k]; deleted {
				continue
			}
			if !yield(k, v) {
				return
			}
		}
		for k, v := range o.set {
			if !yield(k, v) {
				return
			}
		}
	}
}

// apply writes the planned changes into the view's map.
func (o *overlay[K, V]) apply() {
	switch {
	case len(*o.base) == 0 && len(o.set) > 0:
		*o.base = o.set
	default:
		for k := range o.gone {
			delete(*o.base, k)
		}
		for k, v := range o.set {
			(*o.base)[k] = v
		}
	}
	o.set, o.gone = nil, nil
}
