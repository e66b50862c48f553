package announce

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/internal/testwait"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

type recordingL2 struct {
	mu   sync.Mutex
	sets [][]netip.Addr
	gate chan struct{} // when set, Set waits on it
}

func (r *recordingL2) Set(addrs []netip.Addr) {
	if r.gate != nil {
		<-r.gate
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sets = append(r.sets, addrs)
}

func (r *recordingL2) last() ([]netip.Addr, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.sets) == 0 {
		return nil, 0
	}
	return r.sets[len(r.sets)-1], len(r.sets)
}

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// A slow speaker never blocks Announce, and what waited behind it is skipped for the newest.
func TestAnnouncerSkipsToTheNewestWantAndNeverBlocks(t *testing.T) {
	l2 := &recordingL2{gate: make(chan struct{})}
	a := &Announcer{L2: l2}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go a.Run(ctx)
	a.Announce(Want{L2: addrs("192.0.2.1")})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 2; i <= 50; i++ {
			a.Announce(Want{L2: addrs(fmt.Sprintf("192.0.2.%d", i))})
		}
		a.Announce(Want{L2: addrs("192.0.2.99")})
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Announce blocked behind a slow speaker")
	}
	close(l2.gate)
	testwait.Eventually(t, "the newest want applied", func() bool {
		got, _ := l2.last()
		return slices.Equal(got, addrs("192.0.2.99"))
	})
	if _, n := l2.last(); n > 3 {
		t.Errorf("%d sets for 51 wants queued behind a slow speaker: superseded ones were not skipped", n)
	}
}

func TestFromStateUnionsSortedAndDropsJunk(t *testing.T) {
	w := FromState([]*v1.Announcement{
		{Bgp: []string{"203.0.113.10", "2001:db8::1"}, L2: []string{"203.0.113.10"}},
		{Bgp: []string{"198.51.100.1", "203.0.113.10", "not-an-ip"}},
	}, &v1.BGPConfig{LocalAsn: 1})
	if !slices.Equal(w.BGP, addrs("198.51.100.1", "203.0.113.10", "2001:db8::1")) || !slices.Equal(w.L2, addrs("203.0.113.10")) || w.BGPConfig.GetLocalAsn() != 1 {
		t.Errorf("want %+v", w)
	}
}
