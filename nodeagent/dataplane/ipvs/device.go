package ipvs

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// addrDevice holds the service addresses: the kernel routes traffic for an address on a local
// device to the local input path, where IPVS picks it up.
type addrDevice interface {
	Ensure() error
	List() ([]netip.Addr, error)
	Add(netip.Addr) error
	Del(netip.Addr) error
}

// dummyDevice is addrDevice on a dummy link we create and own.
type dummyDevice struct {
	name string
	h    *netlink.Handle
	link netlink.Link
}

// Ensure creates the dummy link when missing and brings it up; up, because IPv6 addresses on a
// down link are not usable as local addresses.
func (d *dummyDevice) Ensure() error {
	l, err := d.h.LinkByName(d.name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("looking up %s: %w", d.name, err)
		}
		if err := d.h.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: d.name}}); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("creating %s: %w", d.name, err)
		}
		if l, err = d.h.LinkByName(d.name); err != nil {
			return fmt.Errorf("looking up %s: %w", d.name, err)
		}
	}
	if l.Type() != "dummy" {
		return fmt.Errorf("%s exists and is a %s, not a dummy we own", d.name, l.Type())
	}
	if err := d.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bringing %s up: %w", d.name, err)
	}
	d.link = l
	return nil
}

// List returns the device's addresses, link-local ones left out.
func (d *dummyDevice) List() ([]netip.Addr, error) {
	addrs, err := d.h.AddrList(d.link, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("listing addresses of %s: %w", d.name, err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && !ip.Unmap().IsLinkLocalUnicast() {
			out = append(out, ip.Unmap())
		}
	}
	return out, nil
}

func hostNet(a netip.Addr) *netlink.Addr {
	bits := 32
	if a.Is6() {
		bits = 128
	}
	// NODAD: an address that waits for duplicate detection is unusable for a second or more.
	return &netlink.Addr{IPNet: &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, bits)}, Flags: unix.IFA_F_NODAD}
}

// Add puts a host address on the device; adding it again is harmless.
func (d *dummyDevice) Add(a netip.Addr) error {
	if err := d.h.AddrReplace(d.link, hostNet(a)); err != nil {
		return fmt.Errorf("adding %s to %s: %w", a, d.name, err)
	}
	return nil
}

// Del removes a host address; one already gone is not an error.
func (d *dummyDevice) Del(a netip.Addr) error {
	if err := d.h.AddrDel(d.link, hostNet(a)); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return fmt.Errorf("removing %s from %s: %w", a, d.name, err)
	}
	return nil
}
