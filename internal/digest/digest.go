// Package digest summarizes a set of named, versioned resources in buckets, so that an agent can
// tell a brain what it holds in a few kilobytes and both sides can find where they differ. The
// brain and the agent must compute it alike: it is part of the wire contract.
package digest

import "hash/fnv"

// Buckets chooses how many buckets summarize n held resources: about 16 per bucket, between 1
// and 4096, a power of two.
func Buckets(n int) int {
	b := 1
	for b < 4096 && b*16 < n {
		b *= 2
	}
	return b
}

// Bucket returns the bucket of a resource name among n.
func Bucket(name string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(name))
	return int(h.Sum32() % uint32(n))
}

// Item is the contribution of one resource to its bucket's digest. Digests add items, so the
// order in which resources are summed does not matter.
func Item(name, version string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	h.Write([]byte{0})
	h.Write([]byte(version))
	return h.Sum64()
}

// Set accumulates bucket digests.
type Set []uint64

// New returns n empty buckets.
func New(n int) Set { return make(Set, n) }

// Add adds a resource.
func (s Set) Add(name, version string) { s[Bucket(name, len(s))] += Item(name, version) }

// Differ returns the buckets in which s and o differ; they must have the same length.
func (s Set) Differ(o Set) []uint32 {
	var out []uint32
	for i := range s {
		if s[i] != o[i] {
			out = append(out, uint32(i))
		}
	}
	return out
}
