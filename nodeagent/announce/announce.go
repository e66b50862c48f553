// Package announce makes the network send a service's outside addresses to this node, as the
// brain decides: the node answers ARP/NDP for the addresses it owns (package l2) and advertises a
// /32 or /128 route for each address it may attract to the routers it peers with (package bgp).
// The brain sends the decision per service (<ns>/<name>/announce) and the node's BGP settings
// (node/bgp); the agent hands the union of the held ones to the speakers on every change.
package announce

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"time"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Want is everything the node announces: the whole set, not a change.
type Want struct {
	// L2 are the addresses the node answers ARP (IPv4) and NDP (IPv6) for, sorted.
	L2 []netip.Addr
	// BGP are the addresses the node advertises as host routes, sorted.
	BGP []netip.Addr
	// BGPConfig is the node's peering; nil when the node has no BGP peers.
	BGPConfig *v1.BGPConfig
}

// L2 is what the announcer needs of the ARP/NDP speaker.
type L2 interface {
	Set(addrs []netip.Addr)
}

// BGP is what the announcer needs of the BGP speaker.
type BGP interface {
	Set(ctx context.Context, conf *v1.BGPConfig, routes []netip.Addr) error
}

// Announcer hands each Want to the speakers on a goroutine of its own, newest first: a slow
// speaker never holds up applying the state, and a Want superseded while it waited is skipped.
type Announcer struct {
	L2  L2  // nil: no L2 announcements
	BGP BGP // nil: no BGP
	Log *slog.Logger

	once sync.Once
	next chan Want
}

// Announce queues w, replacing a queued one.
func (a *Announcer) Announce(w Want) {
	a.once.Do(func() { a.next = make(chan Want, 1) })
	for {
		select {
		case a.next <- w:
			return
		default:
			select {
			case <-a.next:
			default:
			}
		}
	}
}

// Refresh is how often the last Want is handed over again: the L2 speaker reads the node's
// interfaces only then, so a link that comes back or an address that moves is picked up, and the
// BGP speaker retries what failed.
const Refresh = 30 * time.Second

// Run hands queued Wants to the speakers until ctx ends.
func (a *Announcer) Run(ctx context.Context) {
	a.once.Do(func() { a.next = make(chan Want, 1) })
	tick := time.NewTicker(Refresh)
	defer tick.Stop()
	var w Want
	started := false
	for {
		select {
		case <-ctx.Done():
			return
		case w = <-a.next:
			started = true
		case <-tick.C:
			if !started {
				continue
			}
		}
		a.hand(ctx, w)
	}
}

func (a *Announcer) hand(ctx context.Context, w Want) {
	if a.L2 != nil {
		a.L2.Set(w.L2)
	}
	if a.BGP != nil {
		if err := a.BGP.Set(ctx, w.BGPConfig, w.BGP); err != nil {
			a.Log.Error("BGP announcements not applied", "err", err)
		}
	}
}

// FromState gathers a Want from the node's held announcements and BGP config; addresses that do
// not parse are left out (the brain sends only valid ones).
func FromState(announcements []*v1.Announcement, bgp *v1.BGPConfig) Want {
	w := Want{BGPConfig: bgp}
	for _, a := range announcements {
		w.BGP = appendAddrs(w.BGP, a.Bgp)
		w.L2 = appendAddrs(w.L2, a.L2)
	}
	w.BGP, w.L2 = sorted(w.BGP), sorted(w.L2)
	return w
}

func appendAddrs(out []netip.Addr, ss []string) []netip.Addr {
	for _, s := range ss {
		if ip, err := netip.ParseAddr(s); err == nil {
			out = append(out, ip)
		}
	}
	return out
}

func sorted(addrs []netip.Addr) []netip.Addr {
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}
