package stream

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"slices"
	"strings"
)

// Order returns the brains in the order the agent of node tries them: its preferred replica
// first, then the one it fails over to, and so on.
//
// It is rendezvous (highest random weight) hashing: each brain scores hash(node, brain) and the
// highest score comes first. Every agent gets the same brain list (one ConfigMap for a
// DaemonSet), so list order would send the whole fleet to one replica; scoring spreads nodes
// evenly instead. The order depends only on the node and the set of addresses, never on their
// position in the list, so a reordered list changes nothing, and adding or removing a brain
// moves only the nodes that prefer it. A lost replica's nodes fail over to their own second
// choice, which is spread evenly over the survivors rather than piling onto one neighbour.
//
// Tests and tools that need to know which replica serves a node call this same function.
func Order(node string, brains []string) []string {
	type scored struct {
		addr  string
		score uint64
	}
	s := make([]scored, len(brains))
	for i, b := range brains {
		s[i] = scored{b, score(node, b)}
	}
	slices.SortStableFunc(s, func(x, y scored) int {
		if c := cmp.Compare(y.score, x.score); c != 0 {
			return c
		}
		return strings.Compare(x.addr, y.addr) // equal scores still give every agent one order
	})
	out := make([]string, len(s))
	for i, x := range s {
		out[i] = x.addr
	}
	return out
}

// score is node's weight for brain. SHA-256 rather than a fast hash: it runs once per agent
// start, and node names and addresses that differ in their last digit only still get
// independent scores (FNV's last bytes barely reach the high bits that decide the comparison).
// Spaces around an address (a hand-written "a, b") do not change its score.
func score(node, brain string) uint64 {
	h := sha256.New()
	h.Write([]byte(node))
	h.Write([]byte{0}) // no (node, brain) pair reads as another
	h.Write([]byte(strings.TrimSpace(brain)))
	return binary.BigEndian.Uint64(h.Sum(nil))
}
