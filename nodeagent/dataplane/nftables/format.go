package nftables

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// This file writes sets and their elements in nft's syntax, for printed plans and the fake
// kernel's dump. Values are decoded by the set's declared types, as nft does.

// setWord is "map" for maps and "set" otherwise.
func setWord(s *nftables.Set) string {
	if s != nil && s.IsMap {
		return "map"
	}
	return "set"
}

// setSpec lists a set's declaration lines: type and flags.
func setSpec(s *nftables.Set) []string {
	typ := "type " + s.KeyType.Name
	if s.IsMap {
		typ += " : " + s.DataType.Name
	}
	lines := []string{typ}
	var flags []string
	if s.Interval {
		flags = append(flags, "interval")
	}
	if s.Dynamic {
		flags = append(flags, "dynamic")
	}
	if s.HasTimeout {
		flags = append(flags, "timeout")
	}
	if len(flags) > 0 {
		lines = append(lines, "flags "+strings.Join(flags, ","))
	}
	return lines
}

// formatElem writes one element: key, " : " and data or verdict for maps, the comment if any.
// An interval end is written as "end <key>". Without the set's types it writes hex.
func formatElem(s *nftables.Set, e nftables.SetElement, verdictChain string) string {
	var b strings.Builder
	if e.IntervalEnd {
		b.WriteString("end ")
	}
	if s == nil {
		fmt.Fprintf(&b, "0x%x", e.Key)
	} else {
		b.WriteString(formatValue(s.KeyType, e.Key))
	}
	switch {
	case verdictChain != "":
		b.WriteString(" : goto " + verdictChain)
	case len(e.Val) > 0 && s != nil:
		b.WriteString(" : " + formatValue(s.DataType, e.Val))
	case len(e.Val) > 0:
		fmt.Fprintf(&b, " : 0x%x", e.Val)
	}
	if e.Comment != "" {
		fmt.Fprintf(&b, " comment %q", e.Comment)
	}
	return b.String()
}

// formatValue decodes a key or data value by its type; concatenations hold each field padded to
// four bytes. What does not fit the type is written as hex.
func formatValue(t nftables.SetDatatype, v []byte) string {
	parts := nftables.ConcatSetTypeElements(t)
	if len(parts) <= 1 {
		return formatField(t, v)
	}
	var out []string
	for _, p := range parts {
		n := int(p.Bytes+3) / 4 * 4
		if len(v) < n {
			return fmt.Sprintf("0x%x", v)
		}
		out = append(out, formatField(p, v[:p.Bytes]))
		v = v[n:]
	}
	if len(v) > 0 {
		out = append(out, fmt.Sprintf("0x%x", v))
	}
	return strings.Join(out, " . ")
}

func formatField(t nftables.SetDatatype, v []byte) string {
	switch {
	case (t.Name == "ipv4_addr" || t.Name == "ipv6_addr") && len(v) == int(t.Bytes):
		a, _ := netip.AddrFromSlice(v)
		return a.String()
	case t.Name == "inet_proto" && len(v) == 1:
		return protoText(v[0])
	case t.Name == "inet_service" && len(v) == 2:
		return fmt.Sprint(binary.BigEndian.Uint16(v))
	case t.Name == "mark" && len(v) == 4:
		return fmt.Sprintf("0x%08x", binary.NativeEndian.Uint32(v))
	case t.Name == "integer" && len(v) == 4:
		return fmt.Sprint(binary.BigEndian.Uint32(v))
	}
	return fmt.Sprintf("0x%x", v)
}

// protoText names a protocol as nft does: by name if known, else by number.
func protoText(p byte) string {
	if n := dataplane.IPProtoName(p); n != "unknown" {
		return n
	}
	return fmt.Sprint(p)
}
