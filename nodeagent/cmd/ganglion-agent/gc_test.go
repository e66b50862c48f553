package main

import (
	"runtime/debug"
	"testing"
)

// TestGCPercentYieldsToGOGC: the agent collects at agentGCPercent, unless the operator set GOGC.
func TestGCPercentYieldsToGOGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	t.Setenv("GOGC", "")
	setGCPercent()
	if got := debug.SetGCPercent(100); got != agentGCPercent {
		t.Fatalf("without GOGC the agent collects at %d, want %d", got, agentGCPercent)
	}
	t.Setenv("GOGC", "200")
	debug.SetGCPercent(200) // what the runtime read from GOGC at start
	setGCPercent()
	if got := debug.SetGCPercent(100); got != 200 {
		t.Fatalf("with GOGC=200 the agent collects at %d, want 200", got)
	}
}
