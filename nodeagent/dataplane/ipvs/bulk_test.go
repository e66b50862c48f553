package ipvs

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ipvsRequest is a request of bulk.go decoded back, independently of its encoder: the netlink
// and generic-netlink headers by hand, the attributes with the netlink library's parser.
type ipvsRequest struct {
	Type   uint16
	Cmd    uint8
	Key    vsKey
	Spec   vsSpec
	Real   netip.AddrPort
	Weight int
	Addr   netip.Addr
	Link   int
}

func decodeRequest(b []byte) (ipvsRequest, error) {
	msgs, err := syscall.ParseNetlinkMessage(b)
	if err != nil || len(msgs) != 1 {
		return ipvsRequest{}, errors.New("not one netlink message")
	}
	r := ipvsRequest{Type: msgs[0].Header.Type}
	data := msgs[0].Data
	if r.Type == unix.RTM_NEWADDR {
		return decodeAddr(r, data)
	}
	if len(data) < 4 {
		return r, errors.New("short generic-netlink header")
	}
	r.Cmd = data[0]
	attrs, err := nl.ParseRouteAttr(data[4:])
	if err != nil {
		return r, err
	}
	for _, a := range attrs {
		nested, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return r, err
		}
		switch a.Attr.Type {
		case ipvsAttrService:
			err = r.service(nested)
		case ipvsAttrDest:
			err = r.dest(nested)
		}
		if err != nil {
			return r, err
		}
	}
	return r, nil
}

func (r *ipvsRequest) service(attrs []syscall.NetlinkRouteAttr) error {
	for _, a := range attrs {
		v := a.Value
		switch a.Attr.Type {
		case ipvsSvcProtocol:
			r.Key.Proto = nl.NativeEndian().Uint16(v)
		case ipvsSvcAddr:
			r.Key.Addr, _ = netip.AddrFromSlice(v)
		case ipvsSvcPort:
			r.Key.Port = binary.BigEndian.Uint16(v)
		case ipvsSvcSchedName:
			r.Spec.Sched = string(bytes.TrimRight(v, "\x00"))
		case ipvsSvcFlags:
			r.Spec.Flags = nl.NativeEndian().Uint32(v)
		case ipvsSvcTimeout:
			r.Spec.Timeout = nl.NativeEndian().Uint32(v)
		case ipvsSvcNetmask:
			r.Spec.Netmask = nl.NativeEndian().Uint32(v)
		}
	}
	return nil
}

func (r *ipvsRequest) dest(attrs []syscall.NetlinkRouteAttr) error {
	var a netip.Addr
	var port uint16
	for _, at := range attrs {
		switch at.Attr.Type {
		case ipvsDestAddr:
			a, _ = netip.AddrFromSlice(at.Value)
		case ipvsDestPort:
			port = binary.BigEndian.Uint16(at.Value)
		case ipvsDestWeight:
			r.Weight = int(nl.NativeEndian().Uint32(at.Value))
		case ipvsDestFwd:
			if nl.NativeEndian().Uint32(at.Value) != 0 {
				return errors.New("not masquerading")
			}
		}
	}
	r.Real = netip.AddrPortFrom(a, port)
	return nil
}

func decodeAddr(r ipvsRequest, data []byte) (ipvsRequest, error) {
	if len(data) < unix.SizeofIfAddrmsg {
		return r, errors.New("short ifaddrmsg")
	}
	r.Link = int(nl.NativeEndian().Uint32(data[4:8]))
	attrs, err := nl.ParseRouteAttr(data[unix.SizeofIfAddrmsg:])
	if err != nil {
		return r, err
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.IFA_LOCAL {
			r.Addr, _ = netip.AddrFromSlice(a.Value)
		}
	}
	return r, nil
}

func TestBulkRequestsRoundTrip(t *testing.T) {
	v4 := vsKey{Proto: unix.IPPROTO_TCP, Addr: netip.MustParseAddr("10.96.0.1"), Port: 80}
	v6 := vsKey{Proto: unix.IPPROTO_SCTP, Addr: netip.MustParseAddr("fd00::10"), Port: 65535}
	persistent := vsSpec{Sched: "mh", Flags: ipvsPersistent, Timeout: 10800, Netmask: 0xffffffff}
	for _, tc := range []struct {
		name string
		enc  []byte
		want ipvsRequest
	}{
		{"service v4", serviceRequest(42, v4, vsSpec{Sched: "rr", Netmask: 0xffffffff}),
			ipvsRequest{Type: 42, Cmd: ipvsCmdNewService, Key: v4, Spec: vsSpec{Sched: "rr", Netmask: 0xffffffff}}},
		{"persistent service v6", serviceRequest(42, v6, persistent), ipvsRequest{Type: 42, Cmd: ipvsCmdNewService, Key: v6, Spec: persistent}},
		{"real server", destRequest(7, v4, netip.MustParseAddrPort("10.1.2.3:8080"), 3),
			ipvsRequest{Type: 7, Cmd: ipvsCmdNewDest, Key: v4, Real: netip.MustParseAddrPort("10.1.2.3:8080"), Weight: 3}},
		{"address v6", addrRequest(9, v6.Addr), ipvsRequest{Type: unix.RTM_NEWADDR, Addr: v6.Addr, Link: 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeRequest(tc.enc)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("decoded %+v, want %+v", got, tc.want)
			}
		})
	}
}

// fuzzKey builds a virtual-server key from fuzz input; ok is false for an address of no family.
func fuzzKey(proto uint16, addr []byte, port uint16) (vsKey, bool) {
	a, ok := netip.AddrFromSlice(addr)
	return vsKey{Proto: proto, Addr: a, Port: port}, ok
}

func FuzzServiceRequestRoundTrip(f *testing.F) {
	f.Add(uint16(6), []byte{10, 96, 0, 1}, uint16(80), uint8(0), uint32(0), uint32(0), uint32(0xffffffff))
	f.Add(uint16(17), netip.MustParseAddr("fd00::1").AsSlice(), uint16(53), uint8(12), uint32(1), uint32(60), uint32(128))
	f.Fuzz(func(t *testing.T, proto uint16, addr []byte, port uint16, sched uint8, flags, timeout, netmask uint32) {
		k, ok := fuzzKey(proto, addr, port)
		if !ok {
			return
		}
		spec := vsSpec{Sched: Schedulers[int(sched)%len(Schedulers)], Flags: flags, Timeout: timeout, Netmask: netmask}
		got, err := decodeRequest(serviceRequest(99, k, spec))
		if err != nil {
			t.Fatal(err)
		}
		if want := (ipvsRequest{Type: 99, Cmd: ipvsCmdNewService, Key: k, Spec: spec}); got != want {
			t.Fatalf("decoded %+v, want %+v", got, want)
		}
	})
}

func FuzzDestRequestRoundTrip(f *testing.F) {
	f.Add(uint16(6), []byte{10, 96, 0, 1}, uint16(80), []byte{10, 1, 2, 3}, uint16(8080), uint32(1))
	f.Add(uint16(132), netip.MustParseAddr("fd00::1").AsSlice(), uint16(1), netip.MustParseAddr("fd00::2").AsSlice(), uint16(0), uint32(0))
	f.Fuzz(func(t *testing.T, proto uint16, addr []byte, port uint16, real []byte, rport uint16, weight uint32) {
		k, ok := fuzzKey(proto, addr, port)
		ra, rok := netip.AddrFromSlice(real)
		if !ok || !rok {
			return
		}
		rs := netip.AddrPortFrom(ra, rport)
		w := int(weight & 0x7fffffff)
		got, err := decodeRequest(destRequest(5, k, rs, w))
		if err != nil {
			t.Fatal(err)
		}
		want := ipvsRequest{Type: 5, Cmd: ipvsCmdNewDest, Key: vsKey{Proto: proto, Addr: k.Addr, Port: port}, Real: rs, Weight: w}
		if got != want {
			t.Fatalf("decoded %+v, want %+v", got, want)
		}
	})
}

// encodeAcks is what the kernel sends back for requests numbered from first: one NLMSG_ERROR
// each, code 0 for success or a negative errno, carrying the request's header.
func encodeAcks(first uint32, codes []int32) []byte {
	var out []byte
	for i, c := range codes {
		msg := make([]byte, unix.SizeofNlMsghdr+4+unix.SizeofNlMsghdr)
		nl.NativeEndian().PutUint32(msg[0:4], uint32(len(msg)))
		nl.NativeEndian().PutUint16(msg[4:6], unix.NLMSG_ERROR)
		nl.NativeEndian().PutUint32(msg[8:12], first+uint32(i))
		nl.NativeEndian().PutUint32(msg[16:20], uint32(c))
		out = append(out, msg...)
	}
	return out
}

func FuzzAckRoundTrip(f *testing.F) {
	f.Add(uint32(1), []byte{0, 17, 0, 2})
	f.Add(uint32(0xfffffffe), []byte{0, 0, 0, 0, 95})
	f.Fuzz(func(t *testing.T, first uint32, errnos []byte) {
		codes := make([]int32, len(errnos))
		for i, e := range errnos {
			codes[i] = -int32(e)
		}
		acks := newAckSet(first, len(codes))
		acks.take(encodeAcks(first, codes))
		if acks.pending != 0 {
			t.Fatalf("%d acknowledgements not taken", acks.pending)
		}
		for i, e := range errnos {
			ok := acks.errs[i] == nil
			if e != 0 {
				ok = errors.Is(acks.errs[i], unix.Errno(e))
			}
			if !ok {
				t.Fatalf("request %d: got %v, want errno %d", i, acks.errs[i], e)
			}
		}
	})
}

func FuzzAckSetTakesAnyBytes(f *testing.F) {
	f.Add(uint32(1), uint8(4), encodeAcks(1, []int32{0, -17}))
	f.Add(uint32(1), uint8(1), []byte{20, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0})
	// An NLMSG_ERROR too short to hold its code once made take index past its end (a panic).
	f.Add(uint32(7), uint8(2), []byte{16, 0, 0, 0, 2, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, first uint32, n uint8, buf []byte) {
		acks := newAckSet(first, int(n))
		acks.take(buf)
		answered := 0
		for i, a := range acks.answered {
			if a {
				answered++
			} else if acks.errs[i] != nil {
				t.Fatalf("request %d has an error without an answer", i)
			}
		}
		if acks.pending != int(n)-answered || acks.pending < 0 {
			t.Fatalf("pending %d with %d of %d answered", acks.pending, answered, n)
		}
	})
}
