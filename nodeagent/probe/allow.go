package probe

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Refusals of an exec allowlist entry. An operator who allows a command allows it with any
// arguments the brain sends, so an entry must name one fixed program, never something that runs
// whatever its arguments say.
var (
	ErrExecRelative    = errors.New("not an absolute path: a relative command depends on the agent's working directory and PATH")
	ErrExecUnclean     = errors.New("not a clean path (filepath.Clean differs): allowlist entries are compared as exact strings")
	ErrExecInterpreter = errors.New("a shell, interpreter or privilege tool runs any code its arguments say")
)

// interpreters are refused by basename: each of them turns the check's arguments into arbitrary
// code (sh -c, env CMD, python -c, sudo CMD …). Names with versions (python3.12) match by prefix.
var interpreters = map[string]bool{
	"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "mksh": true, "ash": true,
	"csh": true, "tcsh": true, "fish": true, "busybox": true, "env": true, "perl": true,
	"ruby": true, "node": true, "su": true, "sudo": true, "doas": true,
}

var interpreterPrefixes = []string{"python", "perl", "ruby"}

// ValidateExecAllow checks every entry of an exec allowlist and names the first it refuses.
func ValidateExecAllow(paths []string) error {
	for _, p := range paths {
		if err := validateExecPath(p); err != nil {
			return fmt.Errorf("%q: %w", p, err)
		}
	}
	return nil
}

func validateExecPath(p string) error {
	switch {
	case !filepath.IsAbs(p):
		return ErrExecRelative
	case filepath.Clean(p) != p:
		return ErrExecUnclean
	case isInterpreter(filepath.Base(p)):
		return ErrExecInterpreter
	}
	// A symlink such as /usr/local/bin/check -> /bin/bash is the interpreter under another name.
	// busybox is the exception: it picks its applet by the name it was run as (argv[0] is the
	// allowed path), so /bin/nc -> busybox runs nc, never a shell. A path that does not resolve
	// yet (installed later) is judged by its own name only.
	if target, err := filepath.EvalSymlinks(p); err == nil {
		if base := filepath.Base(target); base != "busybox" && isInterpreter(base) {
			return fmt.Errorf("resolves to %s: %w", target, ErrExecInterpreter)
		}
	}
	return nil
}

func isInterpreter(base string) bool {
	if interpreters[base] {
		return true
	}
	for _, prefix := range interpreterPrefixes {
		if strings.HasPrefix(base, prefix) {
			return true
		}
	}
	return false
}
