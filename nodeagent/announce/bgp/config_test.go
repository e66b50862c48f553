package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

func TestParseConfigRejectsNamingTheField(t *testing.T) {
	good := func() *v1.BGPConfig {
		return &v1.BGPConfig{LocalAsn: 64512, Peers: []*v1.BGPPeer{
			{Address: "10.0.0.1", Asn: 64500}, {Address: "fd00::1", Asn: 64500}}}
	}
	for _, tc := range []struct {
		name string
		edit func(*v1.BGPConfig)
		want string
	}{
		{"bad peer address", func(c *v1.BGPConfig) { c.Peers[1].Address = "x" }, `peers[1].address: "x": not an IP address`},
		{"zoned peer address", func(c *v1.BGPConfig) { c.Peers[1].Address = "fe80::1%eth0" }, `peers[1].address: "fe80::1%eth0": zoned`},
		{"peer listed twice", func(c *v1.BGPConfig) { c.Peers[1].Address = "10.0.0.1" }, `peers[1].address: "10.0.0.1": listed twice`},
		{"local asn 0", func(c *v1.BGPConfig) { c.LocalAsn = 0 }, "local_asn: must not be 0"},
		{"peer asn 0", func(c *v1.BGPConfig) { c.Peers[0].Asn = 0 }, "peers[0].asn: must not be 0"},
		{"port out of range", func(c *v1.BGPConfig) { c.Peers[0].Port = 70000 }, "peers[0].port: 70000"},
		{"hold time below 3", func(c *v1.BGPConfig) { c.Peers[0].HoldTimeSeconds = 2 }, "peers[0].hold_time_seconds: 2"},
		{"long password", func(c *v1.BGPConfig) { c.Peers[0].Password = strings.Repeat("x", 81) }, "peers[0].password"},
		{"community with one part", func(c *v1.BGPConfig) { c.Communities = []string{"65000:1", "65000"} }, `communities[1]: "65000": want "a:b"`},
		{"standard community part above 16 bits", func(c *v1.BGPConfig) { c.Communities = []string{"65536:1"} }, `communities[0]: "65536:1": part 1: not a 16-bit number`},
		{"large community part not a number", func(c *v1.BGPConfig) { c.Communities = []string{"1:x:3"} }, `communities[0]: "1:x:3": part 2`},
		{"router id not IPv4", func(c *v1.BGPConfig) { c.RouterId = "fd00::9" }, `router_id: "fd00::9": not an IPv4 address`},
		{"restart time above 12 bits", func(c *v1.BGPConfig) { c.GracefulRestartSeconds = 4096 }, "graceful_restart_seconds: 4096"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(c)
			_, err := parseConfig(c, []netip.Addr{netip.MustParseAddr("192.0.2.1")})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("err = %v; want ErrInvalidConfig naming %q", err, tc.want)
			}
		})
	}
}

func TestParseConfigDefaults(t *testing.T) {
	c := &v1.BGPConfig{LocalAsn: 64512, GracefulRestartSeconds: 120,
		Communities: []string{"64512:100", "4200000000:1:2"},
		Peers:       []*v1.BGPPeer{{Address: "::ffff:10.0.0.1", Asn: 64500}}}
	nodes := []netip.Addr{netip.MustParseAddr("fd00::5"), netip.MustParseAddr("192.0.2.7")}
	d, err := parseConfig(c, nodes)
	if err != nil {
		t.Fatal(err)
	}
	if d.global.routerID != netip.MustParseAddr("192.0.2.7") {
		t.Errorf("router id %s; want the first IPv4 node address", d.global.routerID)
	}
	want := peer{addr: netip.MustParseAddr("10.0.0.1"), asn: 64500, port: 179, holdTime: 90, grTime: 120}
	if got := d.peers[want.addr]; got != want {
		t.Errorf("peer %+v; want %+v (IPv4-mapped address unmapped, port 179, hold time 90)", got, want)
	}
	wantComms := []community{{std: 64512<<16 | 100}, {large: true, global: 4200000000, local1: 1, local2: 2}}
	if len(d.communities) != 2 || d.communities[0] != wantComms[0] || d.communities[1] != wantComms[1] {
		t.Errorf("communities %+v; want %+v", d.communities, wantComms)
	}
	if _, err := parseConfig(&v1.BGPConfig{LocalAsn: 1}, nodes[:1]); err == nil || !strings.Contains(err.Error(), "router_id") {
		t.Errorf("an IPv6-only node without a router id: err = %v; want one naming router_id", err)
	}
}

func TestHostRoutesSortsAndDeduplicates(t *testing.T) {
	got, err := hostRoutes([]netip.Addr{netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("::ffff:203.0.113.2"),
		netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("203.0.113.2")})
	if err != nil {
		t.Fatal(err)
	}
	if s, want := fmt.Sprint(got), "[203.0.113.1 203.0.113.2 2001:db8::1]"; s != want {
		t.Errorf("routes %s; want %s (unmapped, sorted, once each)", s, want)
	}
	if _, err := hostRoutes([]netip.Addr{{}}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("zero address: err = %v; want ErrInvalidConfig", err)
	}
}
