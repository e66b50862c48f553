package dataplane

import (
	"net/netip"

	"golang.org/x/sys/unix"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// NodePortAddrs returns the node's addresses of one family on which NodePorts listen: those that
// NodePortAddresses allows, or all of them when it is empty.
func (n Node) NodePortAddrs(v6 bool) []netip.Addr {
	var out []netip.Addr
	for _, a := range n.Addresses {
		a = a.Unmap()
		if a.Is6() != v6 {
			continue
		}
		ok := len(n.NodePortAddresses) == 0
		for _, p := range n.NodePortAddresses {
			ok = ok || p.Contains(a)
		}
		if ok {
			out = append(out, a)
		}
	}
	return out
}

// IPProto maps the contract's protocol to its IP protocol number and its lowercase name.
func IPProto(p v1.Protocol) (num uint8, name string, ok bool) {
	switch p {
	case v1.Protocol_PROTOCOL_TCP:
		return unix.IPPROTO_TCP, "tcp", true
	case v1.Protocol_PROTOCOL_UDP:
		return unix.IPPROTO_UDP, "udp", true
	case v1.Protocol_PROTOCOL_SCTP:
		return unix.IPPROTO_SCTP, "sctp", true
	}
	return 0, "", false
}

// IPProtoName is the lowercase name of an IP protocol number, as nft and ipvsadm write it.
func IPProtoName(num uint8) string {
	switch num {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_SCTP:
		return "sctp"
	}
	return "unknown"
}
