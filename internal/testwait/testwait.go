// Package testwait is the one way tests wait for a condition: poll it until it holds, with a
// deadline that guards against hangs and is never a performance assertion (timing belongs in
// benchmarks).
package testwait

import (
	"testing"
	"time"
)

// Bound is how long Eventually waits: far above what any condition needs on a loaded machine.
const Bound = 30 * time.Second

// Eventually polls cond until it holds, failing t after Bound; it returns how long it waited.
func Eventually(t testing.TB, what string, cond func() bool) time.Duration {
	t.Helper()
	return Within(t, Bound, what, cond)
}

// Within is Eventually with its own bound, for waits that a loaded machine stretches most, such
// as a process starting. Polls start at 5 ms and back off to 100 ms, so quick conditions are seen
// quickly and expensive ones (a scrape, a process) are not run in a hot loop.
func Within(t testing.TB, bound time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for wait := 5 * time.Millisecond; !cond(); wait = min(2*wait, 100*time.Millisecond) {
		if time.Since(start) > bound {
			t.Fatalf("timed out after %s waiting for: %s", bound, what)
		}
		time.Sleep(wait)
	}
	return time.Since(start)
}
