// Package l2 answers ARP (IPv4) and NDP (IPv6) for the outside addresses this node owns, as
// MetalLB's layer 2 speaker or keepalived's VRRP master do: the brain elects one owner per
// address, the owner's agent hands the whole set to Set, and the speaker makes the link deliver
// traffic for those addresses to this node's MAC. On takeover it sends gratuitous ARP and
// unsolicited neighbour advertisements, so clients and routers move at once instead of when their
// cache entries expire.
package l2

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gratuitousAt is when announcements go out after a takeover, from the takeover: several,
// because one broadcast is easily lost on a busy or flapping link (keepalived repeats its
// gratuitous ARP for the same reason), and spread, so a switch that drops a burst still gets one.
var gratuitousAt = []time.Duration{0, 250 * time.Millisecond, time.Second}

// Config configures a Speaker.
type Config struct {
	// Interfaces restricts answering to these interface names; empty: for each address, every up,
	// non-loopback interface with an address prefix containing it, else the interface of the default
	// route of its family.
	Interfaces []string
	Log        *slog.Logger          // nil: slog.Default()
	Registerer prometheus.Registerer // may be nil
}

// responder answers one family on one interface. Its reader goroutine sees the owned set through
// an atomic pointer, so Set never waits for a read in progress.
type responder interface {
	// update replaces the answered addresses; it returns the ones that were not answered before,
	// the takeovers to announce.
	update(addrs []netip.Addr) (added []netip.Addr)
	// owns reports whether a is still answered: a repeated announcement of an address given up
	// in between must not go out.
	owns(a netip.Addr) bool
	// answering returns the addresses answered, in no order.
	answering() []netip.Addr
	// announce sends one gratuitous ARP or unsolicited neighbour advertisement for a.
	announce(a netip.Addr) error
	// link is the interface as the responder was opened on it.
	link() net.Interface
	close() error
}

// key names a responder: one per interface and family.
type key struct {
	name string
	v6   bool
}

// Speaker answers ARP and NDP for the owned addresses. Set and Close may be called from any
// goroutine; the readers run in their own.
type Speaker struct {
	cfg Config
	log *slog.Logger
	met *metrics

	mu         sync.Mutex // serialises Set and Close
	closed     bool
	responders map[key]responder
	done       chan struct{} // closed by Close: stops pending repeated announcements
	wg         sync.WaitGroup
}

// New returns a Speaker that answers nothing until Set.
func New(cfg Config) (*Speaker, error) {
	log := cfg.Log
	if log == nil {
		log = slog.Default()
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("l2 metrics: %w", err)
	}
	return &Speaker{
		cfg:        cfg,
		log:        log.With("component", "l2"),
		met:        met,
		responders: map[key]responder{},
		done:       make(chan struct{}),
	}, nil
}

// Set replaces the owned addresses. Addresses new on an interface are announced there at once;
// addresses no longer in the set stop being answered. Listeners open when an interface first
// needs one and close when none of its addresses is left. Failures (an interface that cannot be
// listened on) are logged: the rest of the set is still answered, and the next Set retries.
func (s *Speaker) Set(addrs []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	snap, err := takeSnapshot()
	if err != nil {
		// Without the interface list no address can be placed, but one given up must still go
		// quiet at once: another node owns it now, and two answers make clients flap.
		s.log.Error("l2: list interfaces; only withdrawing addresses until the next Set", "err", err)
		s.withdraw(addrs)
		return
	}
	if snap.routeErr != nil {
		s.log.Warn("l2: no default route to place addresses off every subnet", "err", snap.routeErr)
	}
	plan := s.plan(snap, addrs)

	for k, want := range plan {
		r, err := s.responderFor(k, snap.byName[k.name])
		if err != nil {
			s.log.Error("l2: cannot answer on interface", "interface", k.name, "err", err)
			continue
		}
		if added := r.update(want); len(added) > 0 {
			s.log.Info("l2: taking over", "interface", k.name, "addresses", added)
			s.announce(r, family(k.v6), added)
		}
	}
	for k, r := range s.responders {
		if _, ok := plan[k]; !ok {
			s.drop(k, r)
		}
	}
	s.count()
}

// withdraw stops answering every address not in addrs, and answers no new one.
func (s *Speaker) withdraw(addrs []netip.Addr) {
	keep := map[netip.Addr]bool{}
	for _, a := range normalize(addrs) {
		keep[a] = true
	}
	for k, r := range s.responders {
		still := slices.DeleteFunc(r.answering(), func(a netip.Addr) bool { return !keep[a] })
		if len(still) == 0 {
			s.drop(k, r)
			continue
		}
		r.update(still)
	}
	s.count()
}

// count sets the addresses gauge: the distinct addresses answered on at least one interface.
func (s *Speaker) count() {
	answered := map[netip.Addr]bool{}
	for _, r := range s.responders {
		for _, a := range r.answering() {
			answered[a] = true
		}
	}
	s.met.addresses.Set(float64(len(answered)))
}

// plan places every owned address on its interfaces, by responder.
func (s *Speaker) plan(snap snapshot, addrs []netip.Addr) map[key][]netip.Addr {
	plan := map[key][]netip.Addr{}
	for _, a := range normalize(addrs) {
		if dev, ok := snap.own[a]; ok {
			// The kernel answers for the node's own addresses; a second answer from here would at
			// best duplicate it and at worst point clients at another interface's MAC.
			s.log.Warn("l2: not answering for a node address", "address", a, "device", dev)
			continue
		}
		names := snap.choose(a, s.cfg.Interfaces)
		if len(names) == 0 {
			s.log.Warn("l2: no interface to answer on", "address", a)
			continue
		}
		for _, n := range names {
			k := key{name: n, v6: a.Is6()}
			plan[k] = append(plan[k], a)
		}
	}
	return plan
}

// responderFor returns the open responder for k, opening it when there is none, or when the
// interface was replaced or changed its MAC since (a socket bound to a deleted interface hears
// nothing, and answers with a stale MAC would misdirect traffic).
func (s *Speaker) responderFor(k key, ifi net.Interface) (responder, error) {
	if r, ok := s.responders[k]; ok {
		old := r.link()
		if old.Index == ifi.Index && slices.Equal(old.HardwareAddr, ifi.HardwareAddr) {
			return r, nil
		}
		s.drop(k, r)
	}
	var (
		r   responder
		err error
	)
	if k.v6 {
		r, err = openNDP(ifi, s.log, s.met)
	} else {
		r, err = openARP(ifi, s.log, s.met)
	}
	if err != nil {
		return nil, err
	}
	s.log.Debug("l2: listening", "interface", k.name, "family", family(k.v6))
	s.responders[k] = r
	return r, nil
}

// drop closes a responder no longer needed.
func (s *Speaker) drop(k key, r responder) {
	if err := r.close(); err != nil {
		s.log.Warn("l2: close listener", "interface", k.name, "family", family(k.v6), "err", err)
	}
	delete(s.responders, k)
	s.log.Debug("l2: stopped listening", "interface", k.name, "family", family(k.v6))
}

// announce sends the first announcement of each address now, so Set returns with clients
// already told, and the repeats from a goroutine.
func (s *Speaker) announce(r responder, fam string, addrs []netip.Addr) {
	send := func() {
		for _, a := range addrs {
			if !r.owns(a) {
				continue
			}
			if err := r.announce(a); err != nil {
				s.log.Warn("l2: gratuitous announcement", "address", a, "interface", r.link().Name, "err", err)
				continue
			}
			s.met.gratuitous.WithLabelValues(fam).Inc()
		}
	}
	send()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		start := time.Now()
		for _, at := range gratuitousAt[1:] {
			t := time.NewTimer(time.Until(start.Add(at)))
			select {
			case <-s.done:
				t.Stop()
				return
			case <-t.C:
			}
			// A responder closed in between owns nothing, so this sends nothing.
			send()
		}
	}()
}

// Close stops answering and closes every listener; the Speaker answers nothing afterwards.
func (s *Speaker) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	var errs []error
	for k, r := range s.responders {
		if err := r.close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s %s: %w", k.name, family(k.v6), err))
		}
		delete(s.responders, k)
	}
	s.met.addresses.Set(0)
	s.mu.Unlock()
	s.wg.Wait()
	return errors.Join(errs...)
}

// normalize returns the distinct addresses a speaker can answer for: IPv4-mapped IPv6 addresses
// as IPv4, zones dropped, and addresses no neighbour protocol resolves (unspecified, loopback,
// multicast, link-local) left out.
func normalize(addrs []netip.Addr) []netip.Addr {
	seen := map[netip.Addr]bool{}
	var out []netip.Addr
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() ||
			a.IsLinkLocalUnicast() || (a.Is4() && a == netip.AddrFrom4([4]byte{255, 255, 255, 255})) {
			continue
		}
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// family is the metrics label of a family.
func family(v6 bool) string {
	if v6 {
		return "ipv6"
	}
	return "ipv4"
}
