// Package dataplanetest holds what the backends' tests share.
package dataplanetest

import (
	"context"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// WantPasses checks a backend's drift-repair totals: the passes of each result named in passes
// (results not named are not checked), and how many passes read the tables back in full. It
// returns the totals for further checks.
func WantPasses(t testing.TB, m *dataplane.ReconcileMetrics, passes map[string]int, dumps int) dataplane.ReconcileStats {
	t.Helper()
	s := m.Stats()
	for r, n := range passes {
		if s.Passes[r] != n {
			t.Errorf("%s passes: %d, want %d (all: %v)", r, s.Passes[r], n, s.Passes)
		}
	}
	if s.Dumps != dumps {
		t.Errorf("passes that read the tables back: %d, want %d", s.Dumps, dumps)
	}
	return s
}

// ApplyDuringReconcile starts a pass of dp, waits until it reached what holds it (started
// closed; the test's fake kernel then waits on release), applies c, and fails the test if the
// Apply waits for the pass. It then lets the pass finish and fails the test on its error.
func ApplyDuringReconcile(t testing.TB, dp dataplane.Dataplane, started, release chan struct{}, c dataplane.Change) {
	t.Helper()
	passed := make(chan error, 1)
	go func() { passed <- dp.Reconcile(context.Background()) }()
	<-started
	applied := make(chan map[string]error, 1)
	go func() { applied <- dp.Apply(context.Background(), c) }()
	select {
	case errs := <-applied:
		if errs != nil {
			close(release)
			t.Fatalf("Apply during a pass: %v", errs)
		}
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("Apply waited for the Reconcile in progress")
	}
	close(release)
	if err := <-passed; err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
}
