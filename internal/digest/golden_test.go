package digest

import (
	"slices"
	"testing"
)

// The digest is part of the wire contract: an agent built from one commit and a brain built from
// another must put a name in the same bucket and sum it to the same value, or every reconnect
// resends everything. These literals were checked against an independent FNV-1a (32-bit for the
// bucket, 64-bit over name, a zero byte and version for the item) written outside Go. A change
// that breaks them must be deliberate: say so in the commit and NOTES.md.

const goldenVersion = "6c2d5b3f0a1e9d84"

var golden = []struct {
	name         string
	bucket64     int
	bucket4096   int
	itemOfGolden uint64
}{
	{"default/web:http/v4/service", 14, 2318, 0xb83d22d82fb17bb5},
	{"default/web:http/v4/cluster", 3, 515, 0xc2683ce29c94189a},
	{"default/web:http/v4/local", 26, 90, 0xabc84cfdf28b55f1},
	{"default/web/probes", 23, 3991, 0x664b7f8f1ff7761e},
	{"kube-system/kube-dns:dns/v6/cluster", 51, 2227, 0xd684591e4f1a0a4a},
}

func TestBucketAndItemArePinned(t *testing.T) {
	for _, g := range golden {
		if got := Bucket(g.name, 64); got != g.bucket64 {
			t.Errorf("Bucket(%q, 64) = %d, want %d", g.name, got, g.bucket64)
		}
		if got := Bucket(g.name, 4096); got != g.bucket4096 {
			t.Errorf("Bucket(%q, 4096) = %d, want %d", g.name, got, g.bucket4096)
		}
		if got := Item(g.name, goldenVersion); got != g.itemOfGolden {
			t.Errorf("Item(%q, %q) = %#x, want %#x", g.name, goldenVersion, got, g.itemOfGolden)
		}
	}
}

func TestBucketDigestsArePinned(t *testing.T) {
	s := New(4)
	for _, g := range golden {
		s.Add(g.name, goldenVersion)
	}
	// Two names fall in bucket 2 and three in bucket 3, whose sum wraps around 2^64.
	want := Set{0, 0, 0x64056fd6223cd1a6, 0xff3815900ba59902}
	if !slices.Equal(s, want) {
		t.Errorf("digests %#v, want %#v", s, want)
	}
}

func TestBucketCountsArePinned(t *testing.T) {
	// Both sides size the digest from the held count; a different rule makes every hello mismatch.
	for _, c := range []struct{ n, want int }{{1, 1}, {17, 2}, {32, 2}, {33, 4}, {1000, 64}, {65536, 4096}, {65537, 4096}} {
		if got := Buckets(c.n); got != c.want {
			t.Errorf("Buckets(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}
