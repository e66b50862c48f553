package stream_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/stream"
)

// brainSets are replica lists as operators write them: addresses and service names.
var brainSets = [][]string{
	{"10.0.0.1:7070", "10.0.0.2:7070", "10.0.0.3:7070"},
	{"brain-0.ganglion-system.svc:7070", "brain-1.ganglion-system.svc:7070", "brain-2.ganglion-system.svc:7070"},
}

func nodes(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("node-%d", i)
	}
	return out
}

func TestOrderSpreadsNodesEvenly(t *testing.T) {
	for _, brains := range brainSets {
		first := map[string]int{}
		for _, n := range nodes(100) {
			o := stream.Order(n, brains)
			if len(o) != len(brains) {
				t.Fatalf("%s: order %v is not a permutation of %v", n, o, brains)
			}
			first[o[0]]++
		}
		for _, b := range brains {
			if c := first[b]; c < 20 || c > 46 {
				t.Errorf("%s is the first choice of %d of 100 nodes, want 20 to 46 (%v)", b, c, first)
			}
		}
		t.Logf("first choices: %v", first)

		// When one replica goes, its nodes fail over to their own second choice: spread over
		// the survivors, not all onto one neighbour.
		second := map[string]int{}
		for _, n := range nodes(100) {
			if o := stream.Order(n, brains); o[0] == brains[0] {
				second[o[1]]++
			}
		}
		for _, b := range brains[1:] {
			if c, all := second[b], first[brains[0]]; 4*c < all || 4*c > 3*all {
				t.Errorf("%d of %s's %d nodes fail over to %s, want a quarter to three quarters", c, brains[0], all, b)
			}
		}
	}
}

func TestOrderIsStableAcrossCallsAndListChanges(t *testing.T) {
	for _, brains := range brainSets {
		reordered := [][]string{slices.Clone(brains), {brains[2], brains[0], brains[1]}, {brains[1], brains[2], brains[0]}}
		slices.Reverse(reordered[0])
		for _, n := range nodes(100) {
			want := stream.Order(n, brains)
			if again := stream.Order(n, brains); !slices.Equal(again, want) {
				t.Fatalf("%s: %v, then %v", n, want, again)
			}
			for _, l := range reordered {
				if got := stream.Order(n, l); !slices.Equal(got, want) {
					t.Errorf("%s: list %v gives %v, list %v gives %v", n, brains, want, l, got)
				}
			}
			// Losing a replica leaves everyone's order of the others as it was: only the nodes
			// that preferred it move, each to its own second choice.
			for _, gone := range brains {
				rest := slices.DeleteFunc(slices.Clone(brains), func(b string) bool { return b == gone })
				kept := slices.DeleteFunc(slices.Clone(want), func(b string) bool { return b == gone })
				if got := stream.Order(n, rest); !slices.Equal(got, kept) {
					t.Errorf("%s without %s: %v, want %v", n, gone, got, kept)
				}
			}
		}
	}
}
