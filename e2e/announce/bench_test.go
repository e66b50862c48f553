package announce

import (
	"fmt"
	"testing"
	"time"
)

// Floors of issue 14, with the default lease settings.
const (
	l2FailoverFloor  = 3 * time.Second
	bgpWithdrawFloor = time.Second
)

// BenchmarkAnnounce runs the end-to-end scenario once and prints what the outside client and
// the router saw: the client's gap when the L2 owner dies, and the time from an endpoint's
// removal (apply acknowledged) to its node's route leaving the router's table.
func BenchmarkAnnounce(b *testing.B) {
	l := newLab(b)
	f := measure(b, l)
	fmt.Printf("BENCH announce l2_failover_ms=%d bgp_withdraw_ms=%d\n", f.l2Failover.Milliseconds(), f.bgpWithdraw.Milliseconds())
	if f.l2Failover > l2FailoverFloor || f.bgpWithdraw > bgpWithdrawFloor {
		b.Fatalf("past the floors: L2 failover %v (floor %v), BGP withdraw %v (floor %v)", f.l2Failover, l2FailoverFloor, f.bgpWithdraw, bgpWithdrawFloor)
	}
}
