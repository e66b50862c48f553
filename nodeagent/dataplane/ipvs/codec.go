package ipvs

import (
	"encoding/binary"
	"net/netip"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// The IPVS generic-netlink codec: requests for the bulk writer and the handle, and the decoding
// of the kernel's dumps, round-tripped and fuzzed in bulk_test.go (requests, acknowledgements)
// and codec_test.go (dumps).

// IPVS generic-netlink command and attribute numbers (linux/ip_vs.h).
const (
	ipvsCmdNewService = 1
	ipvsCmdSetService = 2
	ipvsCmdDelService = 3
	ipvsCmdGetService = 4
	ipvsCmdNewDest    = 5
	ipvsCmdSetDest    = 6
	ipvsCmdDelDest    = 7
	ipvsCmdGetDest    = 8
	ipvsAttrService   = 1
	ipvsAttrDest      = 2
	ipvsSvcAF         = 1
	ipvsSvcProtocol   = 2
	ipvsSvcAddr       = 3
	ipvsSvcPort       = 4
	ipvsSvcFWMark     = 5
	ipvsSvcSchedName  = 6
	ipvsSvcFlags      = 7
	ipvsSvcTimeout    = 8
	ipvsSvcNetmask    = 9
	ipvsDestAddr      = 1
	ipvsDestPort      = 2
	ipvsDestFwd       = 3
	ipvsDestWeight    = 4
	ipvsDestUThresh   = 5
	ipvsDestLThresh   = 6
	ipvsDestActive    = 7
	ipvsDestInactive  = 8
	ipvsDestAF        = 11
	// bulkChunk bounds the requests in flight: their acknowledgements must fit the receive buffer.
	bulkChunk = 256
)

type genlHeader struct{ cmd uint8 }

// Len and Serialize make genlHeader a netlink request part: command, version 1, padding.
func (h genlHeader) Len() int          { return 4 }
func (h genlHeader) Serialize() []byte { return []byte{h.cmd, 1, 0, 0} }

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func serviceAttr(k vsKey, s vsSpec, full bool) *nl.RtAttr {
	a := nl.NewRtAttr(ipvsAttrService, nil)
	a.AddRtAttr(ipvsSvcAF, nl.Uint16Attr(family(k.Addr)))
	a.AddRtAttr(ipvsSvcProtocol, nl.Uint16Attr(k.Proto))
	a.AddRtAttr(ipvsSvcAddr, k.Addr.AsSlice())
	a.AddRtAttr(ipvsSvcPort, be16(k.Port))
	if full {
		a.AddRtAttr(ipvsSvcSchedName, nl.ZeroTerminated(s.Sched))
		flags := make([]byte, 8)
		nl.NativeEndian().PutUint32(flags, s.Flags)
		nl.NativeEndian().PutUint32(flags[4:], 0xffffffff)
		a.AddRtAttr(ipvsSvcFlags, flags)
		a.AddRtAttr(ipvsSvcTimeout, nl.Uint32Attr(s.Timeout))
		a.AddRtAttr(ipvsSvcNetmask, nl.Uint32Attr(s.Netmask))
	}
	return a
}

// ipvsMsg encodes one IPVS request for the generic-netlink family fam.
func ipvsMsg(fam uint16, cmd uint8, flags int, attrs ...*nl.RtAttr) []byte {
	req := nl.NewNetlinkRequest(int(fam), flags)
	req.AddData(genlHeader{cmd})
	for _, a := range attrs {
		req.AddData(a)
	}
	return req.Serialize()
}

// serviceRequest encodes IPVS_CMD_NEW_SERVICE.
func serviceRequest(fam uint16, k vsKey, s vsSpec) []byte {
	return ipvsMsg(fam, ipvsCmdNewService, unix.NLM_F_ACK, serviceAttr(k, s, true))
}

// destRequest encodes IPVS_CMD_NEW_DEST of a masquerading real server.
func destRequest(fam uint16, k vsKey, rs netip.AddrPort, weight int) []byte {
	return ipvsMsg(fam, ipvsCmdNewDest, unix.NLM_F_ACK, serviceAttr(k, vsSpec{}, false), destAttr(rs, weight, true))
}

// destAttr is IPVS_CMD_ATTR_DEST: the address and port, and with full the settings of a
// masquerading real server.
func destAttr(rs netip.AddrPort, weight int, full bool) *nl.RtAttr {
	d := nl.NewRtAttr(ipvsAttrDest, nil)
	d.AddRtAttr(ipvsDestAddr, rs.Addr().AsSlice())
	d.AddRtAttr(ipvsDestPort, be16(rs.Port()))
	if full {
		d.AddRtAttr(ipvsDestFwd, nl.Uint32Attr(0)) // masquerading
		d.AddRtAttr(ipvsDestWeight, nl.Uint32Attr(uint32(weight)))
		d.AddRtAttr(ipvsDestUThresh, nl.Uint32Attr(0))
		d.AddRtAttr(ipvsDestLThresh, nl.Uint32Attr(0))
	}
	return d
}

// addrRequest encodes RTM_NEWADDR of host address a on link, replacing an existing one.
func addrRequest(link int, a netip.Addr) []byte {
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_REPLACE|unix.NLM_F_ACK)
	fam, bits := unix.AF_INET, 32
	if a.Is6() {
		fam, bits = unix.AF_INET6, 128
	}
	m := nl.NewIfAddrmsg(fam)
	m.Prefixlen = uint8(bits)
	m.Index = uint32(link)
	m.Flags = unix.IFA_F_NODAD
	req.AddData(m)
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, a.AsSlice()))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, a.AsSlice()))
	return req.Serialize()
}

// attrTypeMask drops the nested and byte-order flags from an attribute type.
const attrTypeMask = 0x3fff

// rawAttr is one netlink attribute: its type without flags, and its value.
type rawAttr struct {
	Type  uint16
	Value []byte
}

// parseAttrs splits b into attributes; ok is false when one is malformed. It checks every
// length itself: the netlink library's parser indexes past the end of a buffer whose last
// attribute lacks its padding (found by FuzzDumpDecodesAnyBytes).
func parseAttrs(b []byte) ([]rawAttr, bool) {
	var out []rawAttr
	for len(b) > 0 {
		if len(b) < 4 {
			return out, false
		}
		l := int(nl.NativeEndian().Uint16(b[0:2]))
		if l < 4 || l > len(b) {
			return out, false
		}
		out = append(out, rawAttr{Type: nl.NativeEndian().Uint16(b[2:4]) & attrTypeMask, Value: b[4:l]})
		b = b[min((l+3)&^3, len(b)):]
	}
	return out, true
}

// nested returns the value of the first attribute of type typ in b; ok is false when b holds
// none or is malformed.
func nested(b []byte, typ uint16) ([]byte, bool) {
	attrs, ok := parseAttrs(b)
	if !ok {
		return nil, false
	}
	for _, a := range attrs {
		if a.Type == typ {
			return a.Value, true
		}
	}
	return nil, false
}

func u16(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return nl.NativeEndian().Uint16(v)
}

func u32(v []byte) uint32 {
	if len(v) < 4 {
		return 0
	}
	return nl.NativeEndian().Uint32(v)
}

func port16(v []byte) uint16 {
	if len(v) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

// addrOf reads an address attribute, which the kernel sends as 16 bytes whatever the family.
func addrOf(v []byte, af uint16) netip.Addr {
	n := 16
	if af == unix.AF_INET {
		n = 4
	}
	if len(v) < n {
		n = len(v)
	}
	a, _ := netip.AddrFromSlice(v[:n])
	return a
}

// decodeService reads the IPVS_CMD_ATTR_SERVICE of one GET_SERVICE reply (after its generic
// netlink header). It trusts nothing: a malformed reply decodes as what could be read.
func decodeService(payload []byte) (dumpedService, bool) {
	b, ok := nested(payload, ipvsAttrService)
	if !ok {
		return dumpedService{}, false
	}
	attrs, ok := parseAttrs(b)
	if !ok {
		return dumpedService{}, false
	}
	var s dumpedService
	var addr []byte
	for _, a := range attrs {
		v := a.Value
		switch a.Type {
		case ipvsSvcAF:
			s.AF = u16(v)
		case ipvsSvcProtocol:
			s.Key.Proto = u16(v)
		case ipvsSvcAddr:
			addr = v
		case ipvsSvcPort:
			s.Key.Port = port16(v)
		case ipvsSvcFWMark:
			s.FWMark = u32(v)
		case ipvsSvcSchedName:
			s.Spec.Sched = string(trimNUL(v))
		case ipvsSvcFlags:
			s.Spec.Flags = u32(v)
		case ipvsSvcTimeout:
			s.Spec.Timeout = u32(v)
		case ipvsSvcNetmask:
			s.Spec.Netmask = u32(v)
		}
	}
	s.Key.Addr = addrOf(addr, s.AF)
	return s, true
}

// dumpedService is a virtual server as a dump reports it.
type dumpedService struct {
	Key    vsKey
	Spec   vsSpec
	AF     uint16
	FWMark uint32
}

// dumpedDest is a real server as a dump reports it.
type dumpedDest struct {
	Real             netip.AddrPort
	Fwd              uint32
	Weight           int
	Active, Inactive int
}

// decodeDest reads the IPVS_CMD_ATTR_DEST of one GET_DEST reply; af is its virtual server's
// family, used when the reply does not name its own.
func decodeDest(payload []byte, af uint16) (dumpedDest, bool) {
	b, ok := nested(payload, ipvsAttrDest)
	if !ok {
		return dumpedDest{}, false
	}
	attrs, ok := parseAttrs(b)
	if !ok {
		return dumpedDest{}, false
	}
	var d dumpedDest
	var addr []byte
	var port uint16
	for _, a := range attrs {
		v := a.Value
		switch a.Type {
		case ipvsDestAddr:
			addr = v
		case ipvsDestPort:
			port = port16(v)
		case ipvsDestFwd:
			d.Fwd = u32(v)
		case ipvsDestWeight:
			d.Weight = int(int32(u32(v)))
		case ipvsDestActive:
			d.Active = int(u32(v))
		case ipvsDestInactive:
			d.Inactive = int(u32(v))
		case ipvsDestAF:
			af = u16(v)
		}
	}
	d.Real = netip.AddrPortFrom(addrOf(addr, af), port)
	return d, true
}

func trimNUL(v []byte) []byte {
	for i, c := range v {
		if c == 0 {
			return v[:i]
		}
	}
	return v
}
