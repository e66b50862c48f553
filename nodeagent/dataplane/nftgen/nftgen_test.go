package nftgen

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

func TestNextSkipsZero(t *testing.T) {
	if g := Next(^uint32(0)); g != 1 {
		t.Fatalf("Next(max) = %d, want 1", g)
	}
}

func TestDecodeReadsTheID(t *testing.T) {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(unix.NFTA_GEN_ID, 4242)
	ae.Uint32(unix.NFTA_GEN_PROC_PID, 7)
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if g, ok := Decode(append([]byte{0, 0, 0, 0}, b...)); !ok || g != 4242 {
		t.Fatalf("Decode = %d, %t", g, ok)
	}
	for _, short := range [][]byte{nil, {0, 0}, {0, 0, 0, 0, 1}} {
		if _, ok := Decode(short); ok {
			t.Errorf("Decode(%v) found an id", short)
		}
	}
}

func TestTrackerKnowsOnlyOurOwnCommits(t *testing.T) {
	var tr Tracker
	if tr.Clean(0) {
		t.Fatal("a new tracker is clean")
	}
	tr.Matched(10)
	tr.Committed(true, 11, nil)
	if !tr.Clean(11) {
		t.Fatal("our own commit made the tables unknown")
	}
	tr.Committed(false, 11, nil)
	if !tr.Clean(11) {
		t.Fatal("our refused commit made the tables unknown")
	}
	tr.Committed(true, 13, nil) // someone else committed too
	if tr.Clean(13) {
		t.Fatal("a foreign commit went unnoticed")
	}
	tr.Matched(13)
	if tr.Clean(14) {
		t.Fatal("a later foreign commit went unnoticed")
	}
}
