package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DeviceName is the dummy device the agent owns for its DNS addresses. It is the agent's own,
// apart from the IPVS backend's device, whose addresses that backend prunes.
const DeviceName = "ganglion-dns0"

// EnsureAddrs puts the DNS server's addresses on the node, as NodeLocal DNSCache does with its
// link-local address on a dummy device: clients reach it on the node with no route of their own.
// A kernel built without the dummy driver gets them on lo instead (any local address is
// delivered locally, whatever its device). It returns the device used.
func EnsureAddrs(addrs []netip.Addr) (string, error) {
	link, err := dummy(DeviceName)
	if errors.Is(err, unix.EOPNOTSUPP) {
		link, err = netlink.LinkByName("lo")
	}
	if err != nil {
		return "", fmt.Errorf("dns device %s: %w", DeviceName, err)
	}
	name := link.Attrs().Name
	if err := netlink.LinkSetUp(link); err != nil {
		return name, fmt.Errorf("dns device %s: up: %w", name, err)
	}
	for _, a := range addrs {
		bits := a.BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate detection wait
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return name, fmt.Errorf("dns device %s: address %s: %w", name, a, err)
		}
	}
	return name, nil
}

// dummy returns the dummy device name, creating it if needed.
func dummy(name string) (netlink.Link, error) {
	link, err := netlink.LinkByName(name)
	if !errors.As(err, &netlink.LinkNotFoundError{}) {
		return link, err
	}
	err = netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create: %w", err)
	}
	return netlink.LinkByName(name)
}
