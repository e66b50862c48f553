package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane/nftgen"
)

func (k *netlinkKernel) request(f *family, msgType uint16, attrs []netlink.Attribute) ([]netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | netlink.Dump},
		Data: append([]byte{byte(f.table), unix.NFNETLINK_V0, 0, 0}, data...),
	}
	msgs, err := k.dumpNL.Execute(req)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, errNoTable
		}
		return nil, fmt.Errorf("dump: %w", err)
	}
	for _, m := range msgs {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			return nil, errInterrupted
		}
	}
	return msgs, nil
}

func (k *netlinkKernel) chains(f *family) ([]string, error) {
	if _, err := k.readCC.ListTableOfFamily(TableName, f.table); err != nil {
		return nil, errNoTable
	}
	chains, err := k.readCC.ListChainsOfTableFamily(f.table)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var names []string
	for _, c := range chains {
		if c.Table.Name == TableName {
			names = append(names, c.Name)
		}
	}
	return names, nil
}

func (k *netlinkKernel) rules(f *family, fn func(chain, comment string)) error {
	msgs, err := k.request(f, unix.NFT_MSG_GETRULE, []netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: cstr(TableName)}})
	if err != nil {
		return err
	}
	for _, m := range msgs {
		chain, comment, err := decodeRule(m.Data)
		if err != nil {
			return err
		}
		fn(chain, comment)
	}
	return nil
}

func (k *netlinkKernel) sets(f *family) ([]string, error) {
	sets, err := k.readCC.GetSets(&nftables.Table{Name: TableName, Family: f.table})
	if err != nil {
		return nil, err
	}
	names := make([]string, len(sets))
	for i, s := range sets {
		names[i] = s.Name
	}
	return names, nil
}

func (k *netlinkKernel) elements(f *family, set string, fn func(e nftables.SetElement, chain string)) error {
	msgs, err := k.request(f, unix.NFT_MSG_GETSETELEM, []netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: cstr(TableName)},
		{Type: unix.NFTA_SET_ELEM_LIST_SET, Data: cstr(set)},
	})
	if errors.Is(err, errNoTable) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if err := decodeElements(m.Data, fn); err != nil {
			return err
		}
	}
	return nil
}

func decodeRule(b []byte) (chain, hash string, err error) {
	if len(b) < 4 {
		return "", "", fmt.Errorf("short rule message")
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return "", "", fmt.Errorf("decode rule: %w", err)
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			chain = ad.String()
		case unix.NFTA_RULE_USERDATA:
			hash = udataString(ad.Bytes(), userdata.TypeComment)
		}
	}
	return chain, hash, ad.Err()
}

// decodeElements calls fn for each element of a GETSETELEM reply; elements without a key are
// skipped. Malformed input is an error, never a panic.
func decodeElements(b []byte, fn func(e nftables.SetElement, chain string)) error {
	if len(b) < 4 {
		return fmt.Errorf("short element message")
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return fmt.Errorf("decode elements: %w", err)
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				var e nftables.SetElement
				var chain string
				list.Nested(func(el *netlink.AttributeDecoder) error {
					chain = decodeElement(el, &e)
					return nil
				})
				if e.Key != nil {
					fn(e, chain)
				}
			}
			return nil
		})
	}
	return ad.Err()
}

// decodeElement reads one element's attributes into e and returns its verdict's chain.
func decodeElement(el *netlink.AttributeDecoder, e *nftables.SetElement) (chain string) {
	for el.Next() {
		switch el.Type() {
		case unix.NFTA_SET_ELEM_KEY:
			el.Nested(func(v *netlink.AttributeDecoder) error {
				e.Key, _ = decodeData(v)
				return nil
			})
		case unix.NFTA_SET_ELEM_USERDATA:
			e.Comment = udataString(el.Bytes(), userdata.NFTNL_UDATA_SET_ELEM_COMMENT)
		case unix.NFTA_SET_ELEM_FLAGS:
			e.IntervalEnd = el.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
		case unix.NFTA_SET_ELEM_DATA:
			el.Nested(func(v *netlink.AttributeDecoder) error {
				e.Val, chain = decodeData(v)
				return nil
			})
		}
	}
	return chain
}

// decodeData reads an NFTA_DATA attribute: a value, or a verdict naming a chain.
func decodeData(v *netlink.AttributeDecoder) (value []byte, chain string) {
	for v.Next() {
		switch v.Type() {
		case unix.NFTA_DATA_VALUE:
			value = v.Bytes()
		case unix.NFTA_DATA_VERDICT:
			v.Nested(func(vd *netlink.AttributeDecoder) error {
				for vd.Next() {
					if vd.Type() == unix.NFTA_VERDICT_CHAIN {
						chain = vd.String()
					}
				}
				return nil
			})
		}
	}
	return value, chain
}

// udataString reads a string attribute of nftables user data (type, length, value triples),
// "" when absent. userdata.GetString indexes past the end of a truncated triple (found by
// FuzzDecodeElements); this checks every length against what is left.
func udataString(b []byte, typ userdata.Type) string {
	for len(b) >= 2 {
		t, n := userdata.Type(b[0]), int(b[1])
		if len(b) < 2+n {
			return ""
		}
		if t == typ {
			return strings.TrimSuffix(string(b[2:2+n]), "\x00")
		}
		b = b[2+n:]
	}
	return ""
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// generation reads nf_tables' ruleset generation: one round trip, no table is read.
func (k *netlinkKernel) generation() (uint32, error) { return nftgen.Read(k.genNL) }
