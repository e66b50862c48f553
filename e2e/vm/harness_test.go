package vm

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ganglion-proxy/ganglion/internal/testenv"
)

// skipEnv asks TestInGuestSkipsWhenAsked to skip, as a guest test missing a prerequisite would.
const skipEnv = "GANGLION_VM_TEST_SKIP"

// TestHarnessFailsWhenTheGuestProvesNothing boots guests that exit 0 without passing what was
// expected, which the harness once took for a pass.
func TestHarnessFailsWhenTheGuestProvesNothing(t *testing.T) {
	if Inside() {
		t.Skip("the outer test does not nest")
	}
	testenv.RequireRoot(t)
	ctx := context.Background()
	if _, err := Prepare(ctx); err != nil {
		testenv.Require(t, false, "VM prerequisites: "+err.Error())
	}
	cases := []struct {
		name string
		g    GoTest
		want string
	}{
		// Left to enumerate, the harness refuses a pattern that selects nothing before booting.
		{"pattern selects nothing", GoTest{Run: "^TestNoSuchTest$"}, "matches no test"},
		// Told to expect a test its pattern does not select, the guest runs nothing, exits 0.
		{"guest runs nothing", GoTest{Run: "^TestNoSuchTest$", Expect: []string{"TestGuestKernelHasIPVSAndTools"}},
			"TestGuestKernelHasIPVSAndTools did not run"},
		{"guest test skips", GoTest{Run: "^TestInGuestSkipsWhenAsked$", Env: map[string]string{skipEnv: "1"}},
			"TestInGuestSkipsWhenAsked: SKIP"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := runGoTest(ctx, c.g, t.TempDir())
			if !errors.Is(err, ErrGuestTests) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want the harness to fail saying %q", err, c.want)
			}
		})
	}
}

// TestInGuestSkipsWhenAsked is the guest half of the skip case above; elsewhere it passes.
func TestInGuestSkipsWhenAsked(t *testing.T) {
	if Inside() && os.Getenv(skipEnv) != "" {
		t.Skip("asked to skip, as a test missing a prerequisite would")
	}
}
