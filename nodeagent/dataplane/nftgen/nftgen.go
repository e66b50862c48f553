// Package nftgen reads nf_tables' ruleset generation, which both backends use to tell, for one
// netlink round trip, whether anyone but themselves committed to nftables since they last looked.
// The kernel moves it by one on every committed transaction (anyone's, on any table, in the
// network namespace; a refused or empty one does not move it) and skips 0 when it wraps.
package nftgen

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Read asks the kernel for the generation (NFT_MSG_GETGEN) on c, a NETLINK_NETFILTER socket.
// Nothing is dumped; c may be shared, netlink.Conn serializes requests.
func Read(c *netlink.Conn) (uint32, error) {
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN),
			Flags: netlink.Request},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("nftables generation: %w", err)
	}
	for _, m := range msgs {
		if id, ok := Decode(m.Data); ok {
			return id, nil
		}
	}
	return 0, errors.New("nftables generation: no generation id in the reply")
}

// Decode reads NFTA_GEN_ID from a NEWGEN message's payload (after the nfgenmsg header).
func Decode(b []byte) (uint32, bool) {
	if len(b) < 4 {
		return 0, false
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID {
			return ad.Uint32(), ad.Err() == nil
		}
	}
	return 0, false
}

// Next is the generation after one more commit.
func Next(g uint32) uint32 {
	if g++; g == 0 {
		g = 1
	}
	return g
}

// Tracker keeps what a backend knows of the generation: the one its last transaction left, and
// whether its tables matched its view then (nobody else committed since it knew). It is not
// safe for concurrent use: the backend's apply lock guards it.
type Tracker struct {
	gen   uint32
	known bool
}

// Committed records a transaction of ours and the generation read right after it: the tables
// stay known only if the generation moved by exactly that commit (by none when refused).
// A failed read (err) makes them unknown.
func (t *Tracker) Committed(accepted bool, g uint32, err error) {
	want := t.gen
	if accepted {
		want = Next(t.gen)
	}
	if err != nil || g != want {
		t.known = false
	}
	if err == nil {
		t.gen = g
	}
}

// Matched records that the tables were found to match the view at generation g (a read that
// began and ended at g, or a full rewrite from the view followed by a read of g).
func (t *Tracker) Matched(g uint32) { t.gen, t.known = g, true }

// Forget makes the tables unknown: the next check reads them.
func (t *Tracker) Forget() { t.known = false }

// Clean reports whether g, just read, shows that nobody committed since the tables were known
// to match the view.
func (t *Tracker) Clean(g uint32) bool { return t.known && g == t.gen }
