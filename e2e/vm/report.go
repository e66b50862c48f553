package vm

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// The guest's exit code alone proves nothing: a -test.run pattern that matches no test, or a
// guest test that skips because the VM lacks something, exits 0 like a pass. So the harness
// reads what `go test -test.v` printed about every test and holds it against the list of tests
// the caller expects to pass.

// Test results as `go test -test.v` prints them.
const (
	Pass = "PASS"
	Fail = "FAIL"
	Skip = "SKIP"
)

var (
	runLineRe    = regexp.MustCompile(`^=== RUN\s+(\S+)`)
	resultLineRe = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
)

// GuestTests is what the guest's verbose test output says: the tests (and subtests) that
// started, in order, and the result each one reported.
type GuestTests struct {
	Ran     []string
	Results map[string]string
}

// ParseGuestTests reads `go test -test.v` output, here the guest's serial console, where other
// lines (the kernel's, the init script's) come in between.
func ParseGuestTests(out string) GuestTests {
	g := GuestTests{Results: map[string]string{}}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimRight(line, "\r")
		if m := runLineRe.FindStringSubmatch(line); m != nil {
			g.Ran = append(g.Ran, m[1])
		} else if m := resultLineRe.FindStringSubmatch(line); m != nil {
			g.Results[m[2]] = m[1]
		}
	}
	return g
}

// ErrGuestTests is wrapped by every complaint Check makes.
var ErrGuestTests = errors.New("guest tests did not all pass")

// Check returns nil only when every expected test passed and no test, expected or not, subtest
// or not, failed or skipped. An empty expectation is an error too: a run expected to prove
// nothing is a mistake in the caller's pattern.
func (g GuestTests) Check(expected []string) error {
	if len(expected) == 0 {
		return fmt.Errorf("%w: no test was expected to run (does the pattern match any?)", ErrGuestTests)
	}
	var problems []string
	for _, name := range expected {
		switch r, ok := g.Results[name]; {
		case !ok && slices.Contains(g.Ran, name):
			problems = append(problems, name+" started but reported no result (crashed or timed out?)")
		case !ok:
			problems = append(problems, name+" did not run")
		case r != Pass:
			problems = append(problems, fmt.Sprintf("%s: %s", name, r))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(g.Results)) {
		if r := g.Results[name]; r != Pass && !slices.Contains(expected, name) {
			problems = append(problems, fmt.Sprintf("%s: %s", name, r))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: ran %d, expected %d to pass:\n  %s", ErrGuestTests, len(g.Ran), len(expected),
			strings.Join(problems, "\n  "))
	}
	return nil
}
