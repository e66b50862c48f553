package l2

import (
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
)

// fakeResponder is a responder without sockets.
type fakeResponder struct {
	owned  atomic.Pointer[addrSet]
	closed bool
}

var _ responder = (*fakeResponder)(nil)

func (f *fakeResponder) update(addrs []netip.Addr) []netip.Addr { return swap(&f.owned, addrs) }
func (f *fakeResponder) owns(a netip.Addr) bool                 { return f.owned.Load().has(a) }
func (f *fakeResponder) answering() []netip.Addr                { return list(&f.owned) }
func (f *fakeResponder) announce(netip.Addr) error              { return nil }
func (f *fakeResponder) link() net.Interface                    { return net.Interface{} }
func (f *fakeResponder) close() error                           { f.closed = true; return nil }

func TestWithdrawSilencesGivenUpAddressesWithoutPlacingNewOnes(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	both, gone := &fakeResponder{}, &fakeResponder{}
	both.update([]netip.Addr{vip4, netip.MustParseAddr("192.168.99.201")})
	gone.update([]netip.Addr{vip6})
	s.responders[key{name: "eth0"}] = both
	s.responders[key{name: "eth0", v6: true}] = gone

	s.withdraw([]netip.Addr{vip4, netip.MustParseAddr("192.168.99.202")})

	if got := both.answering(); !slices.Equal(got, []netip.Addr{vip4}) {
		t.Errorf("eth0 answers %v, want only %s", got, vip4)
	}
	if !gone.closed || s.responders[key{name: "eth0", v6: true}] != nil {
		t.Error("a listener left with no address is still open")
	}
	if len(s.responders) != 1 {
		t.Errorf("%d listeners, want 1: withdrawing opens none", len(s.responders))
	}
}
