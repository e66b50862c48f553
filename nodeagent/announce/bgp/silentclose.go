package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dropSessions shuts down, without a NOTIFICATION, this process's TCP connections to the given
// peers (address and port), and returns how many it shut down.
//
// Why: GoBGP v3's StopBgp always sends a Cease NOTIFICATION before closing, and a peer that
// receives one ends graceful restart and flushes our routes (with RFC 8538 GoBGP would even turn
// it into a Hard Reset). A peer that instead sees the connection close keeps our routes as stale
// for the restart time, exactly as if the agent had crashed, which is the case graceful restart
// is for. GoBGP has no API to drop a session silently, so this finds the sockets among the
// process's descriptors by their remote address and shuts them down. shutdown(2), unlike close,
// keeps the descriptor owned by GoBGP valid; its later NOTIFICATION write just fails (EPIPE).
//
// Limits: a descriptor that GoBGP closes and the process reuses between the listing and the
// shutdown could be hit; it would have to be a new connection to the same peer address and
// port, which only this speaker makes.
func dropSessions(peers map[netip.AddrPort]bool) (int, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("list descriptors: %w", err)
	}
	n := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err != nil || !strings.HasPrefix(l, "socket:") {
			continue
		}
		sa, err := unix.Getpeername(fd)
		if err != nil {
			continue // not connected, or not an IP socket
		}
		var ap netip.AddrPort
		switch sa := sa.(type) {
		case *unix.SockaddrInet4:
			ap = netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
		case *unix.SockaddrInet6:
			ap = netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(sa.Port))
		default:
			continue
		}
		if !peers[ap] {
			continue
		}
		if typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE); err != nil || typ != unix.SOCK_STREAM {
			continue
		}
		if err := unix.Shutdown(fd, unix.SHUT_RDWR); err != nil {
			return n, fmt.Errorf("shut down the session to %s: %w", ap, err)
		}
		n++
	}
	return n, nil
}
