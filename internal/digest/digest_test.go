package digest

import (
	"fmt"
	"slices"
	"testing"
)

func TestDigestsFindTheBucketsThatDiffer(t *testing.T) {
	a, b := New(64), New(64)
	for i := range 1000 {
		name := fmt.Sprintf("ns/svc-%d/v4/cluster", i)
		a.Add(name, "v1")
		if i != 7 {
			b.Add(name, "v1")
		}
	}
	b.Add("ns/svc-7/v4/cluster", "v2")
	want := []uint32{uint32(Bucket("ns/svc-7/v4/cluster", 64))}
	if got := a.Differ(b); !slices.Equal(got, want) {
		t.Errorf("differ %v, want %v", got, want)
	}
}

func TestDigestsIgnoreOrder(t *testing.T) {
	a, b := New(8), New(8)
	a.Add("x", "1")
	a.Add("y", "2")
	b.Add("y", "2")
	b.Add("x", "1")
	if d := a.Differ(b); len(d) != 0 {
		t.Errorf("order changed the digest: %v", d)
	}
}

func TestBucketsGrowWithTheSet(t *testing.T) {
	for _, c := range []struct{ n, want int }{{0, 1}, {16, 1}, {17, 2}, {20000, 2048}, {1 << 30, 4096}} {
		if got := Buckets(c.n); got != c.want {
			t.Errorf("Buckets(%d) = %d, want %d", c.n, got, c.want)
		}
	}
}
