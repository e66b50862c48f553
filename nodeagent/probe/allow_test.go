package probe_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/ganglion-proxy/ganglion/nodeagent/probe"
)

// TestValidateExecAllowSaysWhy checks that each refusal wraps its sentinel, and that a busybox
// applet link (busybox runs the applet it is called as, never a shell) is accepted while a link
// to a shell is not.
func TestValidateExecAllowSaysWhy(t *testing.T) {
	dir := t.TempDir()
	link := func(name, target string) string {
		path := filepath.Join(dir, name)
		if err := os.Symlink(target, path); err != nil {
			t.Fatal(err)
		}
		return path
	}
	busybox := filepath.Join(dir, "busybox")
	if err := os.WriteFile(busybox, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want error
	}{
		{path: "/usr/lib/nagios/plugins/check_tcp"},
		{path: link("nc", busybox)},
		{path: "check", want: probe.ErrExecRelative},
		{path: "/opt/../bin/check", want: probe.ErrExecUnclean},
		{path: "/bin/bash", want: probe.ErrExecInterpreter},
		{path: "/usr/bin/python3", want: probe.ErrExecInterpreter},
		{path: link("healthy", "/bin/sh"), want: probe.ErrExecInterpreter},
	} {
		err := probe.ValidateExecAllow([]string{tc.path})
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("ValidateExecAllow(%q) = %v, want %v", tc.path, err, tc.want)
		}
	}
}
