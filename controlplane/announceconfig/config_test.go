package announceconfig

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRefusesNamingTheField(t *testing.T) {
	cases := []struct{ name, yaml, err string }{
		{"unknown field", "l3: true", `unknown field "l3"`},
		{"bad pool", "l2: true\npools: [nope]", `pools[0]: "nope": not a CIDR`},
		{"kubernetes needs a class or a pool", "l2: true", "loadBalancerClasses, pools: Kubernetes mode"},
		{"bad class", "l2: true\nloadBalancerClasses: ['a b']", `loadBalancerClasses[0]: "a b"`},
		{"no groups", "bgp: {groups: []}\npools: [10.0.0.0/8]", "bgp.groups: at least one group"},
		{"asn 0", "bgp: {groups: [{localASN: 0, peers: [{address: 10.0.0.1, asn: 1}]}]}\npools: [10.0.0.0/8]", "bgp.groups[0].localASN: 0"},
		{"peer address", "bgp: {groups: [{localASN: 1, peers: [{address: 10.0.0.1, asn: 1}, {address: x, asn: 1}]}]}\npools: [10.0.0.0/8]",
			`bgp.groups[0].peers[1].address: "x": not an IP address`},
		{"hold time", "bgp: {groups: [{localASN: 1, peers: [{address: 10.0.0.1, asn: 1, holdTimeSeconds: 2}]}]}\npools: [10.0.0.0/8]",
			"bgp.groups[0].peers[0].holdTimeSeconds: 2"},
		{"community", "bgp: {groups: [{localASN: 1, communities: ['65536:1'], peers: [{address: 10.0.0.1, asn: 1}]}]}\npools: [10.0.0.0/8]",
			`bgp.groups[0].communities[0]: "65536:1": "65536" is not a 16-bit number`},
		{"router id", "bgp: {groups: [{localASN: 1, routerID: '::1', peers: [{address: 10.0.0.1, asn: 1}]}]}\npools: [10.0.0.0/8]",
			`bgp.groups[0].routerID: "::1": not an IPv4 address`},
		{"graceful restart", "bgp: {groups: [{localASN: 1, gracefulRestartSeconds: 5000, peers: [{address: 10.0.0.1, asn: 1}]}]}\npools: [10.0.0.0/8]",
			"gracefulRestartSeconds: 5000: at most 4095"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), false)
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Fatalf("error %v, want one containing %q", err, c.err)
			}
		})
	}
}

func TestParseReadsGroupsAndDefaults(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	o, err := Parse([]byte(`
l2: true
bgp:
  groups:
  - nodeSelector: {rack: a}
    localASN: 64512
    communities: ["64512:100", "64512:1:2"]
    peers:
    - {address: 192.168.77.1, asn: 64500, passwordFile: `+pw+`}
  - localASN: 64513
    gracefulRestartSeconds: 0
    peers: [{address: "fd00::1", asn: 64500, port: 1179}]
`), true)
	if err != nil {
		t.Fatal(err)
	}
	if !o.L2 || !o.BGP || !o.ClusterIPs || !o.ExternalIPs || len(o.BGPGroups) != 2 {
		t.Fatalf("options %+v: want l2, bgp, cluster IPs (bare metal), external IPs and two groups", o)
	}
	a, b := o.BGPGroups[0], o.BGPGroups[1]
	if a.Selector["rack"] != "a" || a.Config.LocalAsn != 64512 || a.Config.Peers[0].Password != "s3cret" || a.Config.GracefulRestartSeconds != DefaultGracefulRestartSeconds {
		t.Errorf("group 0: %v %v", a.Selector, a.Config)
	}
	if len(b.Selector) != 0 || b.Config.GracefulRestartSeconds != 0 || b.Config.Peers[0].Port != 1179 {
		t.Errorf("group 1: %v %v", b.Selector, b.Config)
	}
}
