package dns

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DeviceName is the dummy device the agent owns for its DNS addresses. It is the agent's own,
// apart from the IPVS backend's device, whose addresses that backend prunes.
const DeviceName = "ganglion-dns0"

// Device puts the DNS server's addresses on the node, as NodeLocal DNSCache does with its
// link-local address on a dummy device: clients reach it on the node without any route.
type Device interface {
	Ensure(addrs []netip.Addr) error
}

// LinkDevice is the Device on a real dummy link.
type LinkDevice struct{ Name string }

var _ Device = LinkDevice{}

// Ensure creates the dummy device if needed, brings it up and adds each address as a host route.
func (d LinkDevice) Ensure(addrs []netip.Addr) error {
	link, err := netlink.LinkByName(d.Name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		if err := netlink.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: d.Name}}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("dns device %s: create: %w", d.Name, err)
		}
		link, err = netlink.LinkByName(d.Name)
	}
	if err != nil {
		return fmt.Errorf("dns device %s: %w", d.Name, err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("dns device %s: up: %w", d.Name, err)
	}
	for _, a := range addrs {
		bits := a.BitLen()
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}}
		if a.Is6() {
			addr.Flags = unix.IFA_F_NODAD // usable at once, no duplicate detection wait
		}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("dns device %s: address %s: %w", d.Name, a, err)
		}
	}
	return nil
}

// FakeDevice records the addresses it is given.
type FakeDevice struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

var _ Device = (*FakeDevice)(nil)

// Ensure records addrs.
func (f *FakeDevice) Ensure(addrs []netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range addrs {
		if !slices.Contains(f.addrs, a) {
			f.addrs = append(f.addrs, a)
		}
	}
	return nil
}

// Addrs returns the recorded addresses.
func (f *FakeDevice) Addrs() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.addrs)
}
