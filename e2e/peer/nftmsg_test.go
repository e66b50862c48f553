package peer

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"
	"time"
)

// nlmsg encodes one netlink message of type typ: header, nfgenmsg, then body.
func nlmsg(typ uint16, body []byte) []byte {
	n := nlmsgHdrLen + nfgenmsgLen + len(body)
	b := make([]byte, align4(n))
	binary.LittleEndian.PutUint32(b[0:4], uint32(n))
	binary.LittleEndian.PutUint16(b[4:6], typ)
	b[nlmsgHdrLen] = 2 // AF_INET
	copy(b[nlmsgHdrLen+nfgenmsgLen:], body)
	return b
}

// attr encodes a netlink attribute (nested ones are attributes inside data).
func attr(typ uint16, data []byte) []byte {
	b := make([]byte, align4(4+len(data)))
	binary.LittleEndian.PutUint16(b[0:2], uint16(4+len(data)))
	binary.LittleEndian.PutUint16(b[2:4], typ)
	copy(b[4:], data)
	return b
}

func nft(msg int) uint16 { return nfnlSubsysNFTables<<8 | uint16(msg) }

func addr4(s string) []byte { a := netip.MustParseAddr(s).As4(); return a[:] }

func TestSplitMessagesReadsEachMessageOfADatagram(t *testing.T) {
	d := append(nlmsg(nft(nftMsgNewSetElem), []byte{1, 2, 3}), nlmsg(nft(nftMsgNewRule), nil)...)
	msgs, err := splitMessages(d)
	if err != nil || len(msgs) != 2 {
		t.Fatalf("split: %d messages, %v", len(msgs), err)
	}
	if msgs[0].Type != nft(nftMsgNewSetElem) || len(msgs[0].Payload) != nfgenmsgLen+3 {
		t.Errorf("first message: type %#x, %d bytes", msgs[0].Type, len(msgs[0].Payload))
	}
	if msgs[1].Type != nft(nftMsgNewRule) {
		t.Errorf("second message: type %#x", msgs[1].Type)
	}
	for _, cut := range []int{3, 9} {
		if _, err := splitMessages(d[:len(d)-cut]); !errors.Is(err, errShortMessage) {
			t.Errorf("datagram cut by %d bytes: %v, want errShortMessage", cut, err)
		}
	}
}

func TestAddsObjectOnlyForNftablesAdditions(t *testing.T) {
	for _, c := range []struct {
		typ  uint16
		want bool
	}{
		{nft(nftMsgNewSetElem), true}, {nft(nftMsgNewRule), true}, {nft(nftMsgNewChain), true},
		{nft(14), false},                 // DELSETELEM
		{nft(15), false},                 // NEWGEN
		{1<<8 | nftMsgNewSetElem, false}, // another subsystem (ctnetlink)
	} {
		if got := addsObject(c.typ); got != c.want {
			t.Errorf("addsObject(%#x) = %v, want %v", c.typ, got, c.want)
		}
	}
}

// A set element (Ganglion's layout) and a rule's immediate value (kube-proxy's DNAT) both carry
// the address as four raw bytes, at any depth of nesting; a deletion or another address does not
// count.
func TestMonitorSeesAnAddressInAnAddedElementOrRule(t *testing.T) {
	m := &Monitor{want: map[[4]byte]*Sighting{}}
	want := []netip.Addr{netip.MustParseAddr("10.136.0.7"), netip.MustParseAddr("10.136.0.8")}
	s := m.Expect(want...)

	elem := attr(3, attr(1, attr(1, attr(1, append(addr4("10.136.0.7"), 0, 6, 0x1f, 0x90)))))
	deleted := attr(3, attr(1, attr(1, addr4("10.136.0.8"))))
	other := attr(3, attr(1, addr4("10.136.0.9")))
	at := time.Unix(100, 0)
	msgs, err := splitMessages(append(append(nlmsg(nft(nftMsgNewSetElem), elem), nlmsg(nft(14), deleted)...), nlmsg(nft(nftMsgNewSetElem), other)...))
	if err != nil {
		t.Fatal(err)
	}
	m.note(msgs, at)
	if got, ok := s[0].Seen(); !ok || !got.Equal(at) {
		t.Errorf("address in a new element: seen %v at %v, want at %v", ok, got, at)
	}
	if _, ok := s[1].Seen(); ok {
		t.Error("an address only in a deletion counted as programmed")
	}

	rule := attr(4, attr(1, attr(2, attr(1, addr4("10.136.0.8")))))
	later := at.Add(time.Second)
	msgs, _ = splitMessages(nlmsg(nft(nftMsgNewRule), rule))
	m.note(msgs, later)
	if got, ok := s[1].Seen(); !ok || !got.Equal(later) {
		t.Errorf("address in a new rule: seen %v at %v, want at %v", ok, got, later)
	}
	// Seen once: the first sighting stays.
	m.note(msgs, later.Add(time.Second))
	if got, _ := s[1].Seen(); !got.Equal(later) {
		t.Errorf("second sighting moved the time to %v", got)
	}
}

func TestExpectOfOneAddressTwiceSharesTheSighting(t *testing.T) {
	m := &Monitor{want: map[[4]byte]*Sighting{}}
	a := netip.MustParseAddr("10.96.10.10")
	if s := m.Expect(a, a); s[0] != s[1] {
		t.Error("two sightings for one address")
	}
	m.Forget(a)
	if len(m.want) != 0 {
		t.Error("Forget kept the address")
	}
}

func TestListsAddrMatchesWholeAddressesOnly(t *testing.T) {
	// As kube-proxy's and Ganglion's rulesets print them.
	out := `table ip kube-proxy {
	chain endpoint-2BPLU2GR-default/svc-00042/tcp/p__10.136.0.12/8080 {
		ip saddr 10.136.0.12 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.136.0.12:8080
	}
	map backends { elements = { 7 : 10.136.0.3 . 8080, 8 : 110.136.0.4 . 8080 } }
	set s { elements = { 10.136.0.5. } }
}`
	for addr, want := range map[string]bool{
		"10.136.0.12": true, "10.136.0.1": false, "10.136.0.3": true, "10.136.0.4": false, "110.136.0.4": true, "10.136.0.5": true,
	} {
		if got := listsAddr(out, netip.MustParseAddr(addr)); got != want {
			t.Errorf("listsAddr(%s) = %v, want %v", addr, got, want)
		}
	}
}
