package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestExecAllowFlagRefusesWhatCouldRunAnything checks that --exec-allow refuses at startup, naming
// the flag and the entry, every entry that is relative, not clean, or a shell or interpreter
// (by name or through a symlink), and keeps the rest in order.
func TestExecAllowFlagRefusesWhatCouldRunAnything(t *testing.T) {
	dir := t.TempDir()
	disguised := filepath.Join(dir, "check_health")
	if err := os.Symlink("/bin/sh", disguised); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		value   string
		refused string // the entry the error must name; "" when accepted
		want    []string
	}{
		{value: ""},
		{value: "/usr/lib/nagios/plugins/check_http", want: []string{"/usr/lib/nagios/plugins/check_http"}},
		{value: " /opt/a/check , /opt/b/check ,", want: []string{"/opt/a/check", "/opt/b/check"}},
		{value: "check_http", refused: "check_http"},
		{value: "./check_http", refused: "./check_http"},
		{value: "/opt/a/check,bin/check", refused: "bin/check"},
		{value: "/usr/bin/../bin/true", refused: "/usr/bin/../bin/true"},
		{value: "/usr/bin//true", refused: "/usr/bin//true"},
		{value: "/usr/bin/true/", refused: "/usr/bin/true/"},
		{value: "/usr/bin/./true", refused: "/usr/bin/./true"},
		{value: "/bin/sh", refused: "/bin/sh"},
		{value: "/bin/bash", refused: "/bin/bash"},
		{value: "/usr/bin/dash", refused: "/usr/bin/dash"},
		{value: "/bin/zsh", refused: "/bin/zsh"},
		{value: "/bin/ksh", refused: "/bin/ksh"},
		{value: "/bin/ash", refused: "/bin/ash"},
		{value: "/bin/busybox", refused: "/bin/busybox"},
		{value: "/usr/bin/env", refused: "/usr/bin/env"},
		{value: "/usr/bin/python", refused: "/usr/bin/python"},
		{value: "/usr/bin/python3.12", refused: "/usr/bin/python3.12"},
		{value: "/usr/bin/perl", refused: "/usr/bin/perl"},
		{value: "/usr/bin/ruby", refused: "/usr/bin/ruby"},
		{value: "/usr/local/bin/node", refused: "/usr/local/bin/node"},
		{value: "/bin/su", refused: "/bin/su"},
		{value: "/usr/bin/sudo", refused: "/usr/bin/sudo"},
		{value: disguised, refused: disguised},
	} {
		t.Run(tc.value, func(t *testing.T) {
			f, err := parseFlags([]string{"--brain", "127.0.0.1:7070", "--node-name", "n1", "--exec-allow", tc.value})
			if tc.refused != "" {
				if err == nil {
					t.Fatalf("accepted %q, want refused", tc.value)
				}
				if msg := err.Error(); !strings.HasPrefix(msg, "--exec-allow: ") || !strings.Contains(msg, `"`+tc.refused+`"`) {
					t.Fatalf("error %q names not the flag and the entry %q", msg, tc.refused)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(f.execAllow, tc.want) {
				t.Fatalf("execAllow = %q, want %q", f.execAllow, tc.want)
			}
		})
	}
}
