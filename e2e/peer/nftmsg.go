package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// The nftables netlink protocol, as far as a monitor needs it (linux/netfilter/nf_tables.h,
// nfnetlink.h).
const (
	nfnlSubsysNFTables = 10
	nfnlgrpNFTables    = 7
	nlmsgHdrLen        = 16
	nfgenmsgLen        = 4

	nftMsgNewTable   = 0
	nftMsgNewChain   = 3
	nftMsgNewRule    = 6
	nftMsgNewSet     = 9
	nftMsgNewSetElem = 12
	nftMsgNewObj     = 18
)

// nlMessage is one netlink message: its type and what follows its header.
type nlMessage struct {
	Type    uint16
	Payload []byte
}

var errShortMessage = errors.New("netlink: truncated message")

// splitMessages cuts one datagram into its netlink messages. Each starts on a 4-byte boundary
// with a header in host byte order (little-endian on the machines this runs on).
func splitMessages(b []byte) ([]nlMessage, error) {
	var out []nlMessage
	for len(b) >= nlmsgHdrLen {
		n := int(binary.LittleEndian.Uint32(b[0:4]))
		if n < nlmsgHdrLen || n > len(b) {
			return out, fmt.Errorf("%w: length %d of %d bytes", errShortMessage, n, len(b))
		}
		out = append(out, nlMessage{Type: binary.LittleEndian.Uint16(b[4:6]), Payload: b[nlmsgHdrLen:n]})
		b = b[min(align4(n), len(b)):]
	}
	if len(b) > 0 {
		return out, fmt.Errorf("%w: %d bytes left over", errShortMessage, len(b))
	}
	return out, nil
}

func align4(n int) int { return (n + 3) &^ 3 }

// addsObject reports whether a message of type typ is an nftables notification that adds a
// table, chain, rule, set, set element or stateful object: the ones that can bring an address
// into the kernel. Deletions and generation markers cannot.
func addsObject(typ uint16) bool {
	if typ>>8 != nfnlSubsysNFTables {
		return false
	}
	switch typ & 0xff {
	case nftMsgNewTable, nftMsgNewChain, nftMsgNewRule, nftMsgNewSet, nftMsgNewSetElem, nftMsgNewObj:
		return true
	}
	return false
}

// windows calls fn with every 4-byte window of p whose first byte is marked in first, the
// places where an IPv4 address may sit: an element's key or data, a rule's immediate or compared
// value. Scanning bytes rather than decoding attributes reads kube-proxy's rules and Ganglion's
// elements by one method, whatever layout each proxy chose. fn returns false to stop.
func windows(p []byte, first *[256]bool, fn func([4]byte) bool) {
	for i := 0; i+4 <= len(p); i++ {
		if first[p[i]] && !fn([4]byte(p[i:i+4])) {
			return
		}
	}
}

// listsAddr reports whether `nft list` output holds addr as an address of its own: not as the
// start of a longer one (10.136.0.1 is not in 10.136.0.12) nor the end (nor in 110.136.0.1).
func listsAddr(out string, addr netip.Addr) bool {
	s := addr.String()
	for i := 0; ; {
		j := strings.Index(out[i:], s)
		if j < 0 {
			return false
		}
		start, end := i+j, i+j+len(s)
		if (start == 0 || !isAddrByte(out[start-1])) && (end == len(out) || !isAddrByte(out[end]) || out[end] == '.' && (end+1 == len(out) || !isDigit(out[end+1]))) {
			return true
		}
		i = start + 1
	}
}

func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isAddrByte(c byte) bool { return isDigit(c) || c == '.' }
