package resname

import "testing"

// Names are the contract between brain and agent (state.proto): these are the exact strings both
// sides must agree on.
func TestNamesArePinned(t *testing.T) {
	cases := []struct{ base, kind, name string }{
		{"default/web:http/v4", KindService, "default/web:http/v4/service"},
		{"default/web:http/v6", KindCluster, "default/web:http/v6/cluster"},
		{"default/web/v4", KindLocal, "default/web/v4/local"}, // an unnamed port
		{"default/web", KindProbes, "default/web/probes"},
		{"default/web", KindDNS, "default/web/dns"},
	}
	for _, c := range cases {
		if got := Join(c.base, c.kind); got != c.name {
			t.Errorf("Join(%q, %q) = %q, want %q", c.base, c.kind, got, c.name)
		}
		if base, kind := Split(c.name); base != c.base || kind != c.kind {
			t.Errorf("Split(%q) = %q, %q, want %q, %q", c.name, base, kind, c.base, c.kind)
		}
	}
	if base, kind := Split("noslash"); base != "noslash" || kind != "" {
		t.Errorf(`Split("noslash") = %q, %q`, base, kind)
	}
}

func TestDNSNames(t *testing.T) {
	if got := DNS("shop", "db"); got != "shop/db/dns" {
		t.Errorf(`DNS("shop", "db") = %q, want "shop/db/dns"`, got)
	}
	cases := []struct {
		name    string
		ns, svc string
		ok      bool
	}{
		{"shop/db/dns", "shop", "db", true},
		{"shop/db/probes", "", "", false},
		{"shop/db:http/v4/service", "", "", false},
		{"shop/db:http/v4/dns", "", "", false}, // a port base is not a service
		{"db/dns", "", "", false},
		{"/db/dns", "", "", false},
		{"shop//dns", "", "", false},
	}
	for _, c := range cases {
		ns, svc, ok := ParseDNS(c.name)
		if ns != c.ns || svc != c.svc || ok != c.ok {
			t.Errorf("ParseDNS(%q) = %q, %q, %v, want %q, %q, %v", c.name, ns, svc, ok, c.ns, c.svc, c.ok)
		}
		if IsDNS(c.name) != c.ok {
			t.Errorf("IsDNS(%q) = %v, want %v", c.name, !c.ok, c.ok)
		}
	}
	if CapabilityDNS != "dns" {
		t.Errorf("CapabilityDNS = %q: the agent's Hello sends \"dns\"", CapabilityDNS)
	}
}
