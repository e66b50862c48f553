package nftables

import (
	"maps"
	"testing"
)

func TestOverlayLeavesTheViewUntilApplied(t *testing.T) {
	cases := []struct {
		name string
		base map[string]int
		plan func(o *overlay[string, int])
		want map[string]int // the overlay's view, and the base after apply
	}{
		{"put into an empty view", map[string]int{}, func(o *overlay[string, int]) { o.put("a", 1); o.put("b", 2) },
			map[string]int{"a": 1, "b": 2}},
		{"replace and delete", map[string]int{"a": 1, "b": 2}, func(o *overlay[string, int]) { o.put("a", 3); o.del("b") },
			map[string]int{"a": 3}},
		{"delete then put again", map[string]int{"a": 1}, func(o *overlay[string, int]) { o.del("a"); o.put("a", 4) },
			map[string]int{"a": 4}},
		{"put then delete", map[string]int{"a": 1}, func(o *overlay[string, int]) { o.put("c", 5); o.del("c"); o.del("a") },
			map[string]int{}},
		{"delete what is not there", map[string]int{"a": 1}, func(o *overlay[string, int]) { o.del("z") },
			map[string]int{"a": 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			base := c.base
			before := maps.Clone(base)
			o := newOverlay(&base)
			c.plan(&o)
			if got := maps.Collect(o.all()); !maps.Equal(got, c.want) {
				t.Errorf("overlay shows %v, want %v", got, c.want)
			}
			for k, v := range c.want {
				if got, ok := o.get(k); !ok || got != v {
					t.Errorf("get(%q) = %d, %v; want %d", k, got, ok, v)
				}
			}
			if !maps.Equal(base, before) {
				t.Fatalf("planning changed the view: %v, was %v", base, before)
			}
			o.apply()
			if !maps.Equal(base, c.want) {
				t.Errorf("after apply the view is %v, want %v", base, c.want)
			}
			if o.has("a") != (c.want["a"] != 0) {
				t.Errorf("after apply, has(a) = %v", o.has("a"))
			}
		})
	}
}
