package chaos

import (
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// TestChaos is `make chaos`: every fault in turn on one system of three etcd members, two
// brains and three agents under four admin clients. It runs only when GANGLION_CHAOS is set
// (it takes minutes); GANGLION_CHAOS_QUORUM_S shortens the quorum loss (default 60), and
// GANGLION_CHAOS_FAULTS (comma-separated names) runs only those faults. It runs in network
// namespaces with nftables agents and real traffic (root); GANGLION_CHAOS_LAB=0 runs it on the
// host with recording agents instead.
func TestChaos(t *testing.T) {
	if os.Getenv("GANGLION_CHAOS") == "" {
		t.Skip("the chaos run takes minutes: make chaos (GANGLION_CHAOS=1)")
	}
	quorum := 60 * time.Second
	if s, err := strconv.Atoi(os.Getenv("GANGLION_CHAOS_QUORUM_S")); err == nil && s > 0 {
		quorum = time.Duration(s) * time.Second
	}
	h := NewHarness(t, Options{Members: 3, Brains: 2, Agents: 3, Lab: os.Getenv("GANGLION_CHAOS_LAB") != "0"})
	w := NewWorkload(h)
	faults := []Fault{
		MemberKill(5 * time.Second),
		LeaderKill(5 * time.Second),
		QuorumLoss(w, quorum),
		BrainKill(w, 3*time.Second),
		SlowMember(10 * time.Second),
	}
	only := os.Getenv("GANGLION_CHAOS_FAULTS")
	for _, f := range faults {
		if only != "" && !slices.Contains(strings.Split(only, ","), f.Name) {
			continue
		}
		settle(t, h)
		r := Run(t, h, w, 4, 3*time.Second, f)
		Report(t, r)
	}
}

// The short faults of `make test`: each on its own small system, each well under a minute.

func TestMemberKillKeepsAcknowledgedApplies(t *testing.T) {
	h := NewHarness(t, Options{Members: 3, Brains: 1, Agents: 2})
	w := NewWorkload(h)
	Report(t, Run(t, h, w, 3, 2*time.Second, MemberKill(3*time.Second)))
}

func TestPausedMemberKeepsAcknowledgedApplies(t *testing.T) {
	h := NewHarness(t, Options{Members: 3, Brains: 1, Agents: 2})
	w := NewWorkload(h)
	Report(t, Run(t, h, w, 3, 2*time.Second, SlowMember(4*time.Second)))
}

func TestBrainKillMidApplyKeepsAcknowledgedApplies(t *testing.T) {
	h := NewHarness(t, Options{Members: 3, Brains: 2, Agents: 2})
	w := NewWorkload(h)
	Report(t, Run(t, h, w, 4, 2*time.Second, BrainKill(w, time.Second)))
}

// settle waits until the cluster is whole and every brain ready, between faults.
func settle(t *testing.T, h *Harness) {
	t.Helper()
	proc.EventuallyWithin(t, 2*time.Minute, "etcd cluster healthy", h.Etcd.Healthy)
	for i := range h.Brains() {
		h.WaitReady(i)
	}
	proc.EventuallyWithin(t, 2*time.Minute, "agents synced", h.AgentsSynced)
}

// TestQuorumLossAdminCallsFailWithUnavailable is the chaos run's quorum-loss finding as a
// short test: without quorum, admin calls must end with an Unavailable that says why, at once,
// not with a timeout (the caller's deadline, or etcd's own request timeout of about 7 s). It
// fails today, so `make e2e-chaos` leaves it out; run it by name to see the finding.
func TestQuorumLossAdminCallsFailWithUnavailable(t *testing.T) {
	h := NewHarness(t, Options{Members: 3, Brains: 1, Agents: 1})
	w := NewWorkload(h)
	for _, m := range h.Etcd.Members[1:] {
		h.Etcd.Kill(m)
	}
	// Give the surviving member its election timeout to notice it has no leader.
	time.Sleep(3 * time.Second)
	admin := v1.NewAdminServiceClient(h.Conn(0))
	r := rand.New(rand.NewPCG(1, 2))
	for _, op := range []Op{w.Apply(admin, 0, r), w.Delete(admin, 0, []string{key(0)}), w.Get(admin, 0)} {
		t.Logf("%s without quorum: %s after %s: %s", op.Kind, op.Code, op.End.Sub(op.Start).Round(time.Millisecond), op.Err)
		if op.Code != codes.Unavailable || !(strings.Contains(op.Err, "leader") || strings.Contains(op.Err, "quorum")) {
			t.Errorf("%s without quorum ended with %s (%s), want Unavailable saying etcd has no leader or quorum, not a timeout",
				op.Kind, op.Code, op.Err)
		}
	}
	if !h.AgentsSynced() {
		t.Error("the agent lost its synced state during quorum loss")
	}
}

// TestPausedLeaderDoesNotStallAdminCalls is the slow-member finding as a short test: with the
// etcd leader stopped (SIGSTOP) the other two members elect a leader and keep a quorum, so
// admin calls must go on succeeding, not wait on the brain's connection to the stopped member.
func TestPausedLeaderDoesNotStallAdminCalls(t *testing.T) {
	h := NewHarness(t, Options{Members: 3, Brains: 1, Agents: 1})
	w := NewWorkload(h)
	// A bound against hangs far above a call's normal milliseconds, so ten calls fit in the pause.
	w.Timeout = 3 * time.Second
	leader := waitLeader(t, h)
	h.Etcd.Pause(leader)
	defer h.Etcd.Resume(leader)
	proc.EventuallyWithin(t, time.Minute, "a new leader", func() bool {
		l := h.Etcd.Leader()
		return l != nil && l != leader
	})
	admin := v1.NewAdminServiceClient(h.Conn(0))
	for range 10 {
		if op := w.Get(admin, 0); op.Outcome != OK {
			t.Errorf("get with %s stopped and a quorum left: %s after %s: %s", leader.Name, op.Code,
				op.End.Sub(op.Start).Round(time.Millisecond), op.Err)
		}
	}
}
