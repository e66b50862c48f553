package main

import (
	"os"
	"runtime/debug"
)

// agentGCPercent is the agent's collection target when GOGC does not set one. The agent runs on
// every node and is idle most of the time, so memory is worth more than the CPU of collecting
// twice as often: at 10,000 services its RSS follows the heap goal, live heap x (1 + GOGC/100),
// and the runtime's default of 100 held 119 MiB where kube-proxy holds 235 (bench-peer).
const agentGCPercent = 50

// setGCPercent applies agentGCPercent unless the operator chose a GOGC.
func setGCPercent() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(agentGCPercent)
	}
}
