package vm

import (
	"context"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
)

// A console as the guest prints it: CRLF line ends, the init script's and the kernel's lines
// between the test binary's.
const passingConsole = "GANGLION-VM-READY\r\n" +
	"=== RUN   TestA\r\n" +
	"--- PASS: TestA (0.01s)\r\n" +
	"[    3.1] random: crng init done\r\n" +
	"=== RUN   TestB\r\n" +
	"=== RUN   TestB/sub\r\n" +
	"    --- PASS: TestB/sub (0.00s)\r\n" +
	"--- PASS: TestB (0.02s)\r\n" +
	"PASS\r\n" +
	"GANGLION-VM-RESULT rc=0\r\n"

func TestReportPassesWhenEveryExpectedTestPassed(t *testing.T) {
	g := ParseGuestTests(passingConsole)
	if want := []string{"TestA", "TestB", "TestB/sub"}; !slices.Equal(g.Ran, want) {
		t.Fatalf("ran %v, want %v", g.Ran, want)
	}
	if err := g.Check([]string{"TestA", "TestB"}); err != nil {
		t.Fatal(err)
	}
}

// The case the old harness passed: a pattern matching nothing exits 0.
func TestReportFailsWhenTheGuestRanNothing(t *testing.T) {
	console := "GANGLION-VM-READY\ntesting: warning: no tests to run\nPASS\nGANGLION-VM-RESULT rc=0\n"
	err := ParseGuestTests(console).Check([]string{"TestA"})
	if !errors.Is(err, ErrGuestTests) || !strings.Contains(err.Error(), "TestA did not run") {
		t.Fatalf("got %v, want TestA reported as not run", err)
	}
}

func TestReportFailsOnAnySkipFailOrMissingResult(t *testing.T) {
	cases := []struct{ name, console, want string }{
		{"expected test skipped", "=== RUN   TestA\n--- SKIP: TestA (0.00s)\n", "TestA: SKIP"},
		{"subtest skipped", passingConsole + "    --- SKIP: TestB/other (0.00s)\n", "TestB/other: SKIP"},
		{"unexpected test failed", passingConsole + "--- FAIL: TestC (0.00s)\n", "TestC: FAIL"},
		{"expected test failed", "=== RUN   TestA\n--- FAIL: TestA (0.00s)\n", "TestA: FAIL"},
		{"guest died mid-test", "=== RUN   TestA\npanic: boom\n", "TestA started but reported no result"},
		{"one of two ran", "=== RUN   TestA\n--- PASS: TestA (0.00s)\n", "TestB did not run"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := ParseGuestTests(c.console).Check([]string{"TestA", "TestB"})
			if !errors.Is(err, ErrGuestTests) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error saying %q", err, c.want)
			}
		})
	}
}

func TestReportFailsWhenNothingIsExpected(t *testing.T) {
	if err := ParseGuestTests(passingConsole).Check(nil); !errors.Is(err, ErrGuestTests) {
		t.Fatalf("got %v, want an error: a run expected to prove nothing is a mistake", err)
	}
}

// ListTests runs this very test binary, as the harness runs the guest's before booting.
func TestListTestsEnumeratesWhatThePatternSelects(t *testing.T) {
	ctx := context.Background()
	got, err := ListTests(ctx, os.Args[0], ".", "^TestGuest")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"TestGuestKernelHasIPVSAndTools"}; !slices.Equal(got, want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	if got, err := ListTests(ctx, os.Args[0], ".", "^TestNoSuchTest$"); err != nil || len(got) != 0 {
		t.Fatalf("listed %v (%v), want nothing", got, err)
	}
}
