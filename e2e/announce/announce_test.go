// Package announce tests, end to end in network namespaces, that outside clients reach services:
// an L2 address answered by one owner node that fails over, and a BGP address learned by a real
// router (bird2) from every eligible node, spread over them (ECMP), withdrawn when a node's last
// local endpoint goes, and kept across an agent restart (graceful restart).
package announce

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/ganglion-proxy/ganglion/e2e/netlab"
	"github.com/ganglion-proxy/ganglion/e2e/proc"
)

func TestOutsideClientsReachServices(t *testing.T) {
	l := newLab(t)
	f := measure(t, l)
	t.Logf("L2 failover: the client's gap %v; BGP withdraw: %v from apply to the router's table", f.l2Failover, f.bgpWithdraw)
}

// figures are what the scenario measured.
type figures struct {
	l2Failover, bgpWithdraw time.Duration
}

// measure runs the scenario: BGP first (ECMP, graceful restart, withdraw), then the L2
// failover, which takes a node off the network.
func measure(t testing.TB, l *lab) figures {
	l.apply("bgp.yaml", service("bgpweb", bgpVIP, 1, 2))
	l.apply("l2.yaml", service("l2web", l2VIP, 1, 2, 3))
	withdraw := measureBGP(t, l)
	return figures{l2Failover: measureL2Failover(t, l), bgpWithdraw: withdraw}
}

// measureBGP checks ECMP over the two nodes with an endpoint, an agent restart the router rides
// out, and returns how long a withdrawal took to reach the router's table.
func measureBGP(t testing.TB, l *lab) time.Duration {

	// BGP: the two nodes with an endpoint advertise the address, the third does not; the router
	// has both as next hops, and new connections of the client go to both.
	both := []string{netlab.LabNodeIP(1), netlab.LabNodeIP(2)}
	proc.Eventually(t, "the router routes "+bgpVIP+" over node-1 and node-2", func() bool {
		return slices.Equal(l.router.Nexthops(bgpVIP+"/32"), both)
	})
	if bgp, _ := l.announcers("bgpweb", bgpVIP); !slices.Equal(bgp, []string{"node-1", "node-2"}) {
		t.Fatalf("describe: %v advertise %s, want node-1 and node-2", bgp, bgpVIP)
	}
	seen := map[string]int{}
	for range 40 {
		pod, err := l.ask(bgpVIP, 2*time.Second)
		if err != nil {
			t.Fatalf("ask %s through the router: %v", bgpVIP, err)
		}
		seen[pod]++
	}
	if len(seen) != 2 {
		t.Fatalf("40 connections through the router reached %v: want both nodes' pods (ECMP)", seen)
	}

	// Graceful restart: node-1's agent dies and comes back; the router keeps its route
	// meanwhile (stale), and the client keeps reaching the service.
	l.agents[0].Kill()
	restarted := time.Now()
	l.agents[0] = l.startAgent(1)
	for time.Since(restarted) < 3*time.Second {
		if hops := l.router.Nexthops(bgpVIP + "/32"); !slices.Contains(hops, netlab.LabNodeIP(1)) {
			t.Fatalf("the router dropped node-1's route while its agent restarted (graceful restart): next hops %v", hops)
		}
		time.Sleep(20 * time.Millisecond)
	}
	proc.Eventually(t, "node-1's session back", func() bool { return l.router.Established("node1") })

	// Withdraw: node-2's endpoint goes; its route goes from the router.
	applied := time.Now()
	l.apply("bgp.yaml", service("bgpweb", bgpVIP, 1))
	proc.Eventually(t, "node-2's route withdrawn", func() bool {
		return slices.Equal(l.router.Nexthops(bgpVIP+"/32"), []string{netlab.LabNodeIP(1)})
	})
	return time.Since(applied)
}

// measureL2Failover finds the L2 owner, takes it off the network, and returns the outside
// client's gap until another node answers.
func measureL2Failover(t testing.TB, l *lab) time.Duration {
	// L2: the owner answers the client's ARP and serves from its own pod (ETP Local).
	var owner string
	proc.Eventually(t, "an owner of "+l2VIP+" elected and answering", func() bool {
		_, owner = l.announcers("l2web", l2VIP)
		pod, err := l.ask(l2VIP, time.Second)
		return owner != "" && err == nil && pod == podOf(owner)
	})
	i := slices.Index([]string{"node-1", "node-2", "node-3"}, owner) + 1

	// The owner node dies: its link goes down and its agent is killed. The client asks all
	// along; the gap is from its last answer before to its first answer after, from another node.
	stop := make(chan struct{})
	type answer struct {
		at  time.Time
		pod string
	}
	answers := make(chan answer, 10000)
	go func() {
		defer close(answers)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if pod, err := l.ask(l2VIP, 200*time.Millisecond); err == nil {
				answers <- answer{time.Now(), pod}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	// Link first: the node vanishes without a word, as a node that loses power does, and the
	// brain must find out by itself.
	killed := time.Now()
	l.net.Nodes[i-1].NS.Run(t, "ip", "link", "set", "eth0", "down")
	l.agents[i-1].Kill()
	var lastOld, firstNew answer
	deadline := time.After(30 * time.Second)
wait:
	for {
		select {
		case a := <-answers:
			if a.pod == podOf(owner) {
				lastOld = a
				continue
			}
			if a.at.Before(killed) {
				close(stop)
				t.Fatalf("%s answered %s while its owner %s lived: more than one node answers ARP for it", a.pod, l2VIP, owner)
			}
			firstNew = a
			break wait
		case <-deadline:
			close(stop)
			t.Fatalf("no other node answered %s within 30 s of %s's death", l2VIP, owner)
		}
	}
	close(stop)
	for range answers {
	}
	if lastOld.at.IsZero() {
		t.Fatal("the client never reached the owner before it died")
	}
	_, newOwner := l.announcers("l2web", l2VIP)
	if newOwner == owner || newOwner == "" || podOf(newOwner) != firstNew.pod {
		t.Fatalf("after %s died: describe names owner %q, the client reached %s", owner, newOwner, firstNew.pod)
	}
	return firstNew.at.Sub(lastOld.at)
}

func podOf(node string) string {
	var i int
	fmt.Sscanf(node, "node-%d", &i)
	return netlab.LabPodName(i, 0)
}
