package nftables

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The dump decoders read what the kernel sends back at start and on Reconcile. These tests
// encode replies as the kernel does (nested attributes after a 4-byte nfgenmsg header) and check
// that the decoders read back what was encoded, and that nothing they are given panics them.

// testElem is an element as the round trip compares it.
type testElem struct {
	key, val []byte
	comment  string
	end      bool
	chain    string
}

func encodeElements(t testing.TB, set string, elems []testElem) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.String(unix.NFTA_SET_ELEM_LIST_TABLE, TableName)
	ae.String(unix.NFTA_SET_ELEM_LIST_SET, set)
	ae.Nested(unix.NFTA_SET_ELEM_LIST_ELEMENTS, func(list *netlink.AttributeEncoder) error {
		for _, e := range elems {
			list.Nested(unix.NFTA_LIST_ELEM, func(el *netlink.AttributeEncoder) error {
				encodeElement(el, e)
				return nil
			})
		}
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 0}, b...)
}

func encodeElement(el *netlink.AttributeEncoder, e testElem) {
	el.Nested(unix.NFTA_SET_ELEM_KEY, func(v *netlink.AttributeEncoder) error {
		v.Bytes(unix.NFTA_DATA_VALUE, e.key)
		return nil
	})
	if e.end {
		el.Uint32(unix.NFTA_SET_ELEM_FLAGS, unix.NFT_SET_ELEM_INTERVAL_END)
	}
	switch {
	case e.chain != "":
		el.Nested(unix.NFTA_SET_ELEM_DATA, func(v *netlink.AttributeEncoder) error {
			v.Nested(unix.NFTA_DATA_VERDICT, func(vd *netlink.AttributeEncoder) error {
				vd.Int32(unix.NFTA_VERDICT_CODE, unix.NFT_GOTO)
				vd.String(unix.NFTA_VERDICT_CHAIN, e.chain)
				return nil
			})
			return nil
		})
	case e.val != nil:
		el.Nested(unix.NFTA_SET_ELEM_DATA, func(v *netlink.AttributeEncoder) error {
			v.Bytes(unix.NFTA_DATA_VALUE, e.val)
			return nil
		})
	}
	if e.comment != "" {
		el.Bytes(unix.NFTA_SET_ELEM_USERDATA, userdata.AppendString(nil, userdata.NFTNL_UDATA_SET_ELEM_COMMENT, e.comment))
	}
}

func encodeRule(t testing.TB, chain, comment string) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_RULE_TABLE, TableName)
	ae.String(unix.NFTA_RULE_CHAIN, chain)
	ae.Bytes(unix.NFTA_RULE_USERDATA, userdata.AppendString(nil, userdata.TypeComment, comment))
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.NFPROTO_IPV4, unix.NFNETLINK_V0, 0, 0}, b...)
}

func decodeAll(b []byte) ([]testElem, error) {
	var got []testElem
	err := decodeElements(b, func(e nftables.SetElement, chain string) {
		got = append(got, testElem{key: e.Key, val: e.Val, comment: e.Comment, end: e.IntervalEnd, chain: chain})
	})
	return got, err
}

func sameElem(a, b testElem) bool {
	return bytes.Equal(a.key, b.key) && bytes.Equal(a.val, b.val) && a.comment == b.comment && a.end == b.end && a.chain == b.chain
}

func TestDecodeElementsReadsWhatTheKernelSends(t *testing.T) {
	want := []testElem{
		{key: []byte{10, 96, 0, 10, 6, 0, 0, 0, 0, 80, 0, 0}, comment: "default/web:http/v4"},
		{key: []byte{0, 0, 16, 0}, val: []byte{10, 244, 1, 10, 0x1f, 0x90, 0, 0}},
		{key: []byte{0, 0, 32, 0}, end: true},
		{key: []byte{10, 96, 0, 12, 6, 0, 0, 0, 0, 80, 0, 0}, chain: "cl_default/sticky.http/v4"},
	}
	got, err := decodeAll(encodeElements(t, setVIPs, want))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("decoded %d elements, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if !sameElem(got[i], want[i]) {
			t.Errorf("element %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestDecodeRuleReadsChainAndComment(t *testing.T) {
	chain, comment, err := decodeRule(encodeRule(t, "services", "0123456789abcdef id=7"))
	if err != nil || chain != "services" || comment != "0123456789abcdef id=7" {
		t.Fatalf("got (%q, %q, %v)", chain, comment, err)
	}
	if hash, id := parseComment(comment); hash != "0123456789abcdef" || id != 7 {
		t.Fatalf("parseComment: (%q, %d)", hash, id)
	}
}

func TestDecodersRefuseShortMessages(t *testing.T) {
	for _, b := range [][]byte{nil, {1, 2, 3}} {
		if _, _, err := decodeRule(b); err == nil {
			t.Errorf("decodeRule(%x): no error", b)
		}
		if _, err := decodeAll(b); err == nil {
			t.Errorf("decodeElements(%x): no error", b)
		}
	}
}

// FuzzDecodeElements: any reply, however malformed, decodes or fails, never panics; and the
// elements read back feed the table read-back without panicking either.
func FuzzDecodeElements(f *testing.F) {
	f.Add(encodeElements(f, setVIPs, []testElem{{key: []byte{1, 2, 3, 4}, chain: "x"}}))
	f.Add(encodeElements(f, bucketOf(0), []testElem{{key: []byte{0, 0, 16, 0}, val: []byte{1}}, {key: []byte{0, 0, 32, 0}, end: true}}))
	f.Add([]byte{2, 0, 0, 0, 8, 0, 3, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodeAll(b)
		_, _, _ = decodeRule(b)
	})
}

// FuzzElementsRoundTrip: what the encoder writes, the decoder reads back unchanged.
func FuzzElementsRoundTrip(f *testing.F) {
	f.Add([]byte{10, 96, 0, 10}, []byte{}, "default/web:http/v4", false, "")
	f.Add([]byte{0, 0, 16, 0}, []byte{10, 244, 1, 10, 0x1f, 0x90, 0, 0}, "", false, "")
	f.Add([]byte{0, 0, 32, 0}, []byte{}, "", true, "")
	f.Add([]byte{6, 0, 0, 0, 0x75, 0x30, 0, 0}, []byte{}, "", false, "ext_default/np.http/v4")
	f.Fuzz(func(t *testing.T, key, val []byte, comment string, end bool, chain string) {
		// What the kernel can hold: a key, a comment of at most 255 bytes without NUL, a chain
		// name without NUL.
		if len(key) == 0 || len(key) > 64 || len(val) > 64 || len(comment) > 250 || len(chain) > 250 ||
			strings.ContainsRune(comment, 0) || strings.ContainsRune(chain, 0) {
			t.Skip()
		}
		if len(val) == 0 {
			val = nil
		}
		want := testElem{key: key, val: val, comment: comment, end: end, chain: chain}
		if chain != "" {
			want.val = nil
		}
		got, err := decodeAll(encodeElements(t, "s", []testElem{want}))
		if err != nil || len(got) != 1 || !sameElem(got[0], want) {
			t.Fatalf("encoded %+v, decoded %+v, %v", want, got, err)
		}
	})
}

// FuzzReadBack: elements of any shape in the table-wide sets are read back without panicking
// (the read-back indexes keys by the family's address size).
func FuzzReadBack(f *testing.F) {
	f.Add([]byte{10, 96, 0, 10}, false)
	f.Add([]byte{1, 2}, true)
	f.Fuzz(func(t *testing.T, key []byte, v6 bool) {
		fam := familyV4
		if v6 {
			fam = familyV6
		}
		r := oneElemReader{e: nftables.SetElement{Key: key, IntervalEnd: len(key)%2 == 1}}
		if _, err := readState(r, fam); err != nil {
			t.Fatal(err)
		}
	})
}

// oneElemReader is a table whose every set holds one element.
type oneElemReader struct{ e nftables.SetElement }

func (r oneElemReader) chains(*family) ([]string, error) { return []string{chainServices}, nil }
func (r oneElemReader) rules(_ *family, fn func(chain, comment string)) error {
	fn(chainServices, "x id=1")
	return nil
}

func (r oneElemReader) sets(*family) ([]string, error) {
	return []string{setVIPs, setNodePorts, setClusterIPs, setHairpin, setNodePortAddrs, bucketOf(0), "fe-k1", "fe-ep"}, nil
}

func (r oneElemReader) elements(_ *family, _ string, fn func(nftables.SetElement, string)) error {
	fn(r.e, "")
	return nil
}
