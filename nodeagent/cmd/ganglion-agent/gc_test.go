package main

import (
	"runtime/debug"
	"testing"
)

// TestGCPercentYieldsToGOGC: the agent collects at agentGCPercent, unless the operator set GOGC.
func TestGCPercentYieldsToGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	if got := setGCPercent(); got != agentGCPercent {
		t.Fatalf("without GOGC: %d, want %d", got, agentGCPercent)
	}
	if got := debug.SetGCPercent(agentGCPercent); got != agentGCPercent {
		t.Fatalf("without GOGC the runtime collects at %d, want %d", got, agentGCPercent)
	}
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200) // what the runtime read from GOGC at start
	if got := setGCPercent(); got != 200 {
		t.Fatalf("with GOGC=200: %d, want 200", got)
	}
}
