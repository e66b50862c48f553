package l2

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"

	"github.com/mdlayher/packet"
)

// listener is what both responders share: their interface, the owned set their reader sees, and
// the reader's life.
type listener struct {
	ifi   net.Interface
	owned atomic.Pointer[addrSet]
	log   *slog.Logger
	met   *metrics
	stop  chan struct{} // closed by shut: read errors from then on are the sockets closing
	done  chan struct{} // closed by the reader when it returns
}

// init readies a listener in place (its atomic owned set must not be copied).
func (l *listener) init(ifi net.Interface, log *slog.Logger, met *metrics) {
	l.ifi, l.log, l.met = ifi, log.With("interface", ifi.Name), met
	l.stop, l.done = make(chan struct{}), make(chan struct{})
}

func (l *listener) owns(a netip.Addr) bool  { return l.owned.Load().has(a) }
func (l *listener) answering() []netip.Addr { return list(&l.owned) }
func (l *listener) link() net.Interface     { return l.ifi }

// shut stops answering first, so a frame read while closing is not answered, then closes the
// sockets and waits for the reader.
func (l *listener) shut(sockets ...io.Closer) error {
	l.owned.Store(nil)
	close(l.stop)
	var errs []error
	for _, c := range sockets {
		errs = append(errs, c.Close())
	}
	<-l.done
	return errors.Join(errs...)
}

// serveFrames reads frames from pc and hands each to answer until stop is closed and pc with it.
// Errors do not end it: a read error short of closing (ENOBUFS under a flood, say) or a failed
// send is one lost answer, and the requester asks again.
func serveFrames(pc *packet.Conn, size int, stop <-chan struct{}, log *slog.Logger, answer func(frame []byte) error) {
	buf := make([]byte, size)
	for {
		n, _, err := pc.ReadFrom(buf)
		if err != nil {
			if stopped(stop) || errors.Is(err, net.ErrClosed) {
				return
			}
			log.Debug("l2: read", "err", err)
			continue
		}
		if err := answer(buf[:n]); err != nil {
			log.Warn("l2: answer", "err", err)
		}
	}
}

// stopped reports whether stop is closed.
func stopped(stop <-chan struct{}) bool {
	select {
	case <-stop:
		return true
	default:
		return false
	}
}

// addrSet is an immutable set of owned addresses, swapped whole so readers need no lock.
type addrSet map[netip.Addr]struct{}

// has reports whether a is in the set; a nil set has nothing.
func (s *addrSet) has(a netip.Addr) bool {
	if s == nil {
		return false
	}
	_, ok := (*s)[a]
	return ok
}

// swap stores the set of addrs in p and returns those not in the previous one.
func swap(p *atomic.Pointer[addrSet], addrs []netip.Addr) []netip.Addr {
	next := make(addrSet, len(addrs))
	for _, a := range addrs {
		next[a] = struct{}{}
	}
	prev := p.Swap(&next)
	var added []netip.Addr
	for _, a := range addrs {
		if !prev.has(a) {
			added = append(added, a)
		}
	}
	return added
}

// list returns the addresses in p.
func list(p *atomic.Pointer[addrSet]) []netip.Addr {
	s := p.Load()
	if s == nil {
		return nil
	}
	out := make([]netip.Addr, 0, len(*s))
	for a := range *s {
		out = append(out, a)
	}
	return out
}
