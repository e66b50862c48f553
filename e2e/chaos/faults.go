package chaos

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/ganglion-proxy/ganglion/e2e/proc"
)

// MemberKill SIGKILLs a member that does not lead and restarts it after down.
func MemberKill(down time.Duration) Fault {
	return Fault{Name: "member-kill", Inject: func(t testing.TB, h *Harness, r *Result) {
		leader := waitLeader(t, h)
		victim := h.Etcd.Members[0]
		if victim == leader {
			victim = h.Etcd.Members[1]
		}
		killFor(h, victim, down, r)
	}}
}

// LeaderKill SIGKILLs the member that leads (asked with the etcd client's Status) and restarts
// it after down.
func LeaderKill(down time.Duration) Fault {
	return Fault{Name: "leader-kill", Inject: func(t testing.TB, h *Harness, r *Result) {
		killFor(h, waitLeader(t, h), down, r)
	}}
}

func killFor(h *Harness, m *Member, down time.Duration, r *Result) {
	h.Etcd.Kill(m)
	time.Sleep(down)
	h.Etcd.Start(m)
	r.Notef("member=%s down_s=%.0f", m.Name, down.Seconds())
}

// SlowMember pauses the leader (SIGSTOP) for d and resumes it: a member whose disk or CPU
// stalls. The leader is the one whose stall costs most: an election, and the brain's requests
// on its connection wait.
func SlowMember(d time.Duration) Fault {
	return Fault{Name: "slow-member", Inject: func(t testing.TB, h *Harness, r *Result) {
		leader := waitLeader(t, h)
		h.Etcd.Pause(leader)
		time.Sleep(d)
		h.Etcd.Resume(leader)
		r.Notef("member=%s paused_s=%.0f", leader.Name, d.Seconds())
	}}
}

// brainKillAttempts bounds how often BrainKill strikes again when no write was in flight at
// its kill: on a quiet machine a write can end in the moment between seeing it start and the
// kill.
const brainKillAttempts = 5

// BrainKill SIGKILLs brain 0 while its clients apply, and starts it again after down.
func BrainKill(w *Workload, down time.Duration) Fault {
	return Fault{Name: "brain-kill", Inject: func(t testing.TB, h *Harness, r *Result) {
		inflight, attempts := 0, 0
		for inflight == 0 && attempts < brainKillAttempts {
			attempts++
			// Strike a moment after a write to brain 0 began, so that it is in the brain, not on
			// the wire.
			proc.Eventually(t, "a write in flight on brain 0", func() bool { return w.Writing(0) })
			time.Sleep(500 * time.Microsecond)
			killed := time.Now()
			h.Brain(0).Kill()
			time.Sleep(down)
			h.StartBrain(0)
			h.WaitReady(0)
			// The kill is mid-apply when a call to brain 0 was in flight at that moment.
			for _, op := range w.History.Ops() {
				if op.Client >= 0 && op.Client%h.Brains() == 0 && op.Kind != KindGet && op.Start.Before(killed) && op.End.After(killed) {
					inflight++
				}
			}
		}
		r.Notef("writes_in_flight_at_kill=%d kills=%d", inflight, attempts)
		if inflight == 0 {
			r.Failf("no write was in flight on brain 0 at any of %d kills: the fault did not test a kill mid-apply", attempts)
		}
	}}
}

// QuorumLoss SIGKILLs two of three members for d and restarts them. Meanwhile the agents must
// keep their state (connected and synced), and admin calls must fail fast with Unavailable:
// a call that runs into CallTimeout hangs, a finding.
func QuorumLoss(w *Workload, d time.Duration) Fault {
	return Fault{Name: "quorum-loss", Inject: func(t testing.TB, h *Harness, r *Result) {
		victims := h.Etcd.Members[1:]
		start := time.Now()
		for _, m := range victims {
			h.Etcd.Kill(m)
		}
		unsynced, unserved := 0, 0
		var held map[string]State
		for time.Since(start) < d {
			if !h.AgentsSynced() {
				unsynced++
			}
			// Once writes in flight at the loss have ended, what each agent holds must stay put:
			// the brain serves the last state and nothing new can commit.
			if time.Since(start) > 3*time.Second {
				now := h.Held(t.Context())
				if len(now) != len(h.Agents) || (held != nil && !sameHeld(held, now)) {
					unserved++
				}
				held = now
			}
			time.Sleep(time.Second)
		}
		end := time.Now()
		for _, m := range victims {
			h.Etcd.Start(m)
		}
		r.Notef("down_s=%.0f agents_unsynced_samples=%d agents_state_changed_samples=%d", d.Seconds(), unsynced, unserved)
		if unsynced > 0 {
			r.Failf("agents lost their synced state %d times during quorum loss (sampled every second)", unsynced)
		}
		if unserved > 0 {
			r.Failf("%d samples during quorum loss found an agent not served or its state changed (last: %v)", unserved, held)
		}
		// Calls that began once the loss was established (the brain's etcd client needs a moment
		// to see it) and ended before it was over.
		outageCalls(w.History.Ops(), start.Add(3*time.Second), end, r)
	}}
}

// outageCalls reports how admin calls made during an outage ended: how many, with which codes,
// and the slowest; it fails the result for a write acknowledged without quorum, a hang, or an
// error other than Unavailable.
func outageCalls(ops []Op, from, to time.Time, r *Result) {
	codeCount := map[codes.Code]int{}
	slowestBy := map[codes.Code]time.Duration{}
	var slowest time.Duration
	n := 0
	example := ""

	for _, op := range ops {
		if op.Start.Before(from) || op.End.After(to) || op.Client < 0 {
			continue
		}
		n++
		codeCount[op.Code]++
		slowest = max(slowest, op.End.Sub(op.Start))
		slowestBy[op.Code] = max(slowestBy[op.Code], op.End.Sub(op.Start))
		if op.Code == codes.Unavailable && example == "" {
			example = op.Err
		}
		if op.Outcome == OK && op.Kind != KindGet {
			r.Failf("%s acknowledged without quorum: %s", op.Kind, describe(&op))
		}
	}
	var cs []string
	for c, k := range codeCount {
		cs = append(cs, fmt.Sprintf("%s:%d(slowest_%.1fs)", c, k, slowestBy[c].Seconds()))
	}
	slices.Sort(cs)
	r.Notef("outage_calls=%d outage_codes=%s outage_slowest_call_s=%.2f", n, strings.Join(cs, ","), slowest.Seconds())
	if example != "" {
		r.Notef("outage_unavailable_example=%q", example)
	}
	if codeCount[codes.DeadlineExceeded] > 0 {
		r.Failf("%d admin calls during quorum loss hung until the client's %s deadline instead of failing fast with Unavailable",
			codeCount[codes.DeadlineExceeded], CallTimeout)
	}
	for c, k := range codeCount {
		if c != codes.Unavailable && c != codes.DeadlineExceeded && c != codes.OK {
			r.Failf("%d admin calls during quorum loss failed with %s, not Unavailable", k, c)
		}
	}
}

func sameHeld(a, b map[string]State) bool {
	if len(a) != len(b) {
		return false
	}
	for n, s := range a {
		if !equal(s, b[n]) {
			return false
		}
	}
	return true
}

// waitLeader waits until a member says it leads.
func waitLeader(t testing.TB, h *Harness) *Member {
	t.Helper()
	var leader *Member
	proc.EventuallyWithin(t, time.Minute, "an etcd leader", func() bool {
		leader = h.Etcd.Leader()
		return leader != nil
	})
	return leader
}
