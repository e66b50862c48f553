package nftables

// benchRuns is how often each side of a BENCH ratio is measured (internal/benchstat says why).
const benchRuns = 7

// benchApplyRuns is how many pairs the apply ratio is the median of: one change costs
// milliseconds, and the issue holds this ratio to its floor in every run, which 7 pairs on a
// shared 2-core machine cannot (one run's ratio was 1.86, the next 0.58).
const benchApplyRuns = 31

// benchApplyFloor is the apply ratio's floor (issue 13): a change with 10,000 services installed
// costs at most this many times one with 100. A run above it fails.
const benchApplyFloor = 1.5
