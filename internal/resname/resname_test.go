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
