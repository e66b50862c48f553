package nftables

// benchRuns is how often each side of a BENCH ratio is measured (internal/benchstat says why).
const benchRuns = 7
