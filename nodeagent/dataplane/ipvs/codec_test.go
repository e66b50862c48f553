package ipvs

import (
	"net/netip"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// kernelAddr is an address as the kernel's dumps carry it: 16 bytes whatever the family.
func kernelAddr(a netip.Addr) []byte {
	b := make([]byte, 16)
	copy(b, a.AsSlice())
	return b
}

func TestDumpRepliesDecode(t *testing.T) {
	v4 := vsKey{Proto: unix.IPPROTO_UDP, Addr: netip.MustParseAddr("10.96.0.10"), Port: 53}
	spec := vsSpec{Sched: "wrr", Flags: ipvsPersistent, Timeout: 60, Netmask: 0xffffffff}
	got, ok := decodeService(serviceAttr(v4, spec, true).Serialize())
	if !ok || got.Key != v4 || got.Spec != spec || got.AF != unix.AF_INET {
		t.Errorf("service = %+v (ok %v), want %s %s", got, ok, v4, spec)
	}
	// The kernel pads an IPv4 address to 16 bytes: the family says how much of it counts.
	padded := nl.NewRtAttr(ipvsAttrService, nil)
	padded.AddRtAttr(ipvsSvcAddr, kernelAddr(v4.Addr))
	padded.AddRtAttr(ipvsSvcAF, nl.Uint16Attr(unix.AF_INET))
	if got, ok := decodeService(padded.Serialize()); !ok || got.Key.Addr != v4.Addr {
		t.Errorf("padded IPv4 address read as %s (ok %v)", got.Key.Addr, ok)
	}
	rs := netip.MustParseAddrPort("10.1.2.3:5353")
	d := destAttr(rs, 7, true)
	gotD, ok := decodeDest(d.Serialize(), unix.AF_INET)
	if !ok || gotD.Real != rs || gotD.Weight != 7 || gotD.Fwd != 0 {
		t.Errorf("dest = %+v (ok %v), want %s weight 7", gotD, ok, rs)
	}
}

func TestDumpEndsOnDoneAndFailsOnError(t *testing.T) {
	part := func(typ uint16, seq uint32, flags uint16, data []byte) []syscall.NetlinkMessage {
		return []syscall.NetlinkMessage{{Header: syscall.NlMsghdr{Type: typ, Seq: seq, Flags: flags}, Data: data}}
	}
	reply := append([]byte{ipvsCmdNewService, 1, 0, 0}, serviceAttr(vsKey{Proto: 6, Addr: netip.MustParseAddr("10.0.0.1"), Port: 1}, vsSpec{Sched: "rr"}, true).Serialize()...)
	for _, tc := range []struct {
		name     string
		msgs     []syscall.NetlinkMessage
		payloads int
		done     bool
		fails    bool
	}{
		{"a reply", part(30, 5, unix.NLM_F_MULTI, reply), 1, false, false},
		{"another dump's reply", part(30, 4, unix.NLM_F_MULTI, reply), 0, false, false},
		{"done", part(unix.NLMSG_DONE, 5, 0, []byte{0, 0, 0, 0}), 0, true, false},
		{"done with an error", part(unix.NLMSG_DONE, 5, 0, []byte{0xf0, 0xff, 0xff, 0xff}), 0, true, true},
		{"error", part(unix.NLMSG_ERROR, 5, 0, []byte{0xfe, 0xff, 0xff, 0xff}), 0, true, true},
		{"short error", part(unix.NLMSG_ERROR, 5, 0, []byte{1}), 0, true, true},
		{"interrupted", part(30, 5, unix.NLM_F_DUMP_INTR, reply), 0, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, done, err := dumpPart(tc.msgs, 5)
			if len(out) != tc.payloads || done != tc.done || (err != nil) != tc.fails {
				t.Errorf("payloads %d, done %v, err %v; want %d, %v, failing %v", len(out), done, err, tc.payloads, tc.done, tc.fails)
			}
		})
	}
}

func FuzzServiceDumpRoundTrip(f *testing.F) {
	f.Add(uint16(6), []byte{10, 96, 0, 1}, uint16(80), uint8(0), uint32(1), uint32(60), uint32(0xffffffff))
	f.Add(uint16(17), netip.MustParseAddr("fd00::1").AsSlice(), uint16(53), uint8(3), uint32(0), uint32(0), uint32(128))
	f.Fuzz(func(t *testing.T, proto uint16, addr []byte, port uint16, sched uint8, flags, timeout, netmask uint32) {
		k, ok := fuzzKey(proto, addr, port)
		if !ok {
			return
		}
		spec := vsSpec{Sched: Schedulers[int(sched)%len(Schedulers)], Flags: flags, Timeout: timeout, Netmask: netmask}
		got, ok := decodeService(serviceAttr(k, spec, true).Serialize())
		if !ok || got.Key != k || got.Spec != spec || got.AF != family(k.Addr) {
			t.Fatalf("decoded %+v (ok %v), want %s %+v", got, ok, k, spec)
		}
	})
}

func FuzzDumpDecodesAnyBytes(f *testing.F) {
	f.Add([]byte{20, 0, 1, 0, 6, 0, 1, 0, 2, 0, 0, 0, 8, 0, 3, 0, 10, 0, 0, 1})
	f.Add(destAttr(netip.MustParseAddrPort("[fd00::2]:80"), 1, true).Serialize())
	f.Add([]byte{16, 0, 0, 0, 3, 0, 2, 0, 5, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeService(b)
		decodeDest(b, unix.AF_INET6)
		if msgs, err := syscall.ParseNetlinkMessage(b); err == nil {
			out, done, err := dumpPart(msgs, 5)
			if err != nil && (!done || out != nil) {
				t.Fatalf("a failed dump returned %d payloads, done %v", len(out), done)
			}
		}
	})
}
