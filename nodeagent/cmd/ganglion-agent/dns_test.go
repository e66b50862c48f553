package main

import (
	"slices"
	"testing"
)

func TestDNSIsOnByDefaultOnlyInBareMetalModeWithAKernelDataplane(t *testing.T) {
	cases := []struct {
		args         []string
		on, explicit bool
	}{
		{[]string{"--dataplane", "nftables"}, true, false},
		{[]string{"--dataplane", "ipvs"}, true, false},
		{[]string{"--dataplane", "recording"}, false, false},
		{[]string{"--token-file", "/run/token"}, false, false},
		{[]string{"--token-file", "/run/token", "--dns"}, true, true},
		{[]string{"--dns=false"}, false, true},
	}
	for _, c := range cases {
		f, err := parseFlags(append([]string{"--brain", "b:1", "--node-name", "n"}, c.args...))
		if err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		if on, explicit := f.dns.enabled(f); on != c.on || explicit != c.explicit {
			t.Errorf("%v: on %v explicit %v, want %v %v", c.args, on, explicit, c.on, c.explicit)
		}
	}
}

func TestDNSUpstreamsLeaveOutTheServersOwnAddresses(t *testing.T) {
	d := dnsFlags{upstream: "192.0.2.1, 169.254.20.10, [2001:db8::1]:5353, 192.0.2.2:53"}
	got, err := d.upstreamList([]string{"169.254.20.10:53"})
	if want := []string{"192.0.2.1:53", "[2001:db8::1]:5353", "192.0.2.2:53"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("upstreams %v (%v), want %v", got, err, want)
	}
	if _, err := (&dnsFlags{upstream: "resolver.example"}).upstreamList(nil); err == nil {
		t.Error("a host name was taken as an upstream address")
	}
	for _, bad := range [][]string{{"--dns-listen", "169.254.20.10"}, {"--dns-domain", "."}, {"--dns-upstream", "nope"}} {
		if _, err := parseFlags(append([]string{"--brain", "b:1", "--node-name", "n", "--dns=false"}, bad...)); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
