package nftables

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// dumper reads one family's table back from the kernel. It is used at start and by Reconcile,
// never by Apply. Rules are read as (chain, comment) pairs only: the comment is the rule's hash.
type dumper struct {
	cc    *nftables.Conn
	nl    *netlink.Conn
	table *nftables.Table
}

// errNoTable means the family's table does not exist.
var errNoTable = errors.New("table does not exist")

func (d *dumper) request(msgType uint16, attrs []netlink.Attribute) ([]netlink.Message, error) {
	data, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | msgType),
			Flags: netlink.Request | netlink.Dump},
		Data: append([]byte{byte(d.table.Family), unix.NFNETLINK_V0, 0, 0}, data...),
	}
	msgs, err := d.nl.Execute(req)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, errNoTable
		}
		return nil, fmt.Errorf("dump: %w", err)
	}
	return msgs, nil
}

// state reads the table into a kernelState; errNoTable when it is missing.
func (d *dumper) state() (*kernelState, error) {
	k := newKernelState()
	if _, err := d.cc.ListTableOfFamily(d.table.Name, d.table.Family); err != nil {
		return nil, errNoTable
	}
	chains, err := d.cc.ListChainsOfTableFamily(d.table.Family)
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, c := range chains {
		if c.Table.Name == d.table.Name {
			k.chains[c.Name] = []string{}
		}
	}
	msgs, err := d.request(unix.NFT_MSG_GETRULE, []netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: cstr(d.table.Name)}})
	if err != nil {
		return nil, err
	}
	for _, m := range msgs {
		chain, comment, err := decodeRule(m.Data)
		if err != nil {
			return nil, err
		}
		if _, ok := k.chains[chain]; ok {
			hash, id := parseComment(comment)
			k.chains[chain] = append(k.chains[chain], hash)
			if id != 0 {
				k.ids[chain] = id
			}
		}
	}
	sets, err := d.cc.GetSets(d.table)
	if err != nil {
		return nil, fmt.Errorf("list sets: %w", err)
	}
	static := map[string]bool{}
	f := familyV4
	if d.table.Family == nftables.TableFamilyIPv6 {
		f = familyV6
	}
	defs, err := staticDataSets(f)
	if err != nil {
		return nil, err
	}
	for _, s := range defs {
		static[s.Name] = true
	}
	for _, s := range sets {
		k.setNames[s.Name] = true
		if _, _, ok := parseObjectName(s.Name); ok {
			k.sets[s.Name] = true
			continue
		}
		c, isClass := parseClassSet(s.Name)
		if isClass {
			k.classes[c] = true
		}
		if isClass || static[s.Name] {
			if err := d.readSet(s.Name, func(e nftables.SetElement, _ string) {
				de := dataElem{set: s.Name, key: e.Key, val: e.Val, owner: e.Comment}
				k.data[de.id()] = de
			}); err != nil {
				return nil, err
			}
		}
	}
	return k, d.elements(k)
}

// elements reads the table-wide sets' elements into k.
func (d *dumper) elements(k *kernelState) error {
	f := familyV4
	if d.table.Family == nftables.TableFamilyIPv6 {
		f = familyV6
	}
	al := int(f.addrLen)
	read := func(set string, fn func(key []byte, chain string)) error {
		return d.readSet(set, func(e nftables.SetElement, chain string) { fn(e.Key, chain) })
	}
	addr := func(b []byte) netip.Addr { a, _ := netip.AddrFromSlice(b); return a }
	var errs []error
	for i := range uint32(endpointBuckets) {
		errs = append(errs, d.readSet(bucketOf(i), func(e nftables.SetElement, _ string) {
			key := binary.BigEndian.Uint32(e.Key)
			if e.IntervalEnd {
				key-- // an end element holds end+1, which may be the next set's first slot
			}
			id := key >> slotBits
			k.ep[id] = append(k.ep[id], e)
		}))
	}
	errs = append(errs,
		read(setVIPs, func(key []byte, chain string) {
			if len(key) == al+8 {
				k.vips[vipKey{addr(key[:al]), key[al], binary.BigEndian.Uint16(key[al+4:])}] = chain
			}
		}),
		read(setNodePorts, func(key []byte, chain string) {
			if len(key) == 8 {
				k.nodeports[npKey{key[0], binary.BigEndian.Uint16(key[4:])}] = chain
			}
		}),
		read(setClusterIPs, func(key []byte, _ string) { k.clusterIPs[addr(key)] = true }),
		read(setNodePortAddrs, func(key []byte, _ string) { k.npAddrs[addr(key)] = true }),
		read(setHairpin, func(key []byte, _ string) {
			if len(key) == 2*al {
				k.hairpin[addr(key[:al])] = true
			}
		}),
	)
	return errors.Join(errs...)
}

// readSet calls fn for each element of a set; a missing set has none (Reconcile recreates it).
func (d *dumper) readSet(set string, fn func(e nftables.SetElement, chain string)) error {
	msgs, err := d.request(unix.NFT_MSG_GETSETELEM, []netlink.Attribute{
		{Type: unix.NFTA_SET_ELEM_LIST_TABLE, Data: cstr(d.table.Name)},
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
			hash, _ = userdata.GetString(ad.Bytes(), userdata.TypeComment)
		}
	}
	return chain, hash, ad.Err()
}

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
					for el.Next() {
						switch el.Type() {
						case unix.NFTA_SET_ELEM_KEY:
							el.Nested(func(v *netlink.AttributeDecoder) error {
								for v.Next() {
									if v.Type() == unix.NFTA_DATA_VALUE {
										e.Key = v.Bytes()
									}
								}
								return nil
							})
						case unix.NFTA_SET_ELEM_USERDATA:
							e.Comment, _ = userdata.GetString(el.Bytes(), userdata.NFTNL_UDATA_SET_ELEM_COMMENT)
						case unix.NFTA_SET_ELEM_FLAGS:
							e.IntervalEnd = el.Uint32()&unix.NFT_SET_ELEM_INTERVAL_END != 0
						case unix.NFTA_SET_ELEM_DATA:
							el.Nested(func(v *netlink.AttributeDecoder) error {
								for v.Next() {
									if v.Type() == unix.NFTA_DATA_VALUE {
										e.Val = v.Bytes()
									}
									if v.Type() == unix.NFTA_DATA_VERDICT {
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
								return nil
							})
						}
					}
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

func cstr(s string) []byte { return append([]byte(s), 0) }
