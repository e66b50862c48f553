package chaos

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/store"
)

// at builds an operation from t0+start to t0+end (milliseconds).
func at(op Op, start, end int) Op {
	t0 := time.Unix(1000, 0)
	op.Start, op.End = t0.Add(time.Duration(start)*time.Millisecond), t0.Add(time.Duration(end)*time.Millisecond)
	return op
}

func apl(puts State, o Outcome) Op { return Op{Kind: KindApply, Puts: puts, Outcome: o} }
func del(o Outcome, names ...string) Op {
	return Op{Kind: KindDelete, Deletes: names, Outcome: o, Code: map[Outcome]codes.Code{Failed: codes.NotFound}[o]}
}
func get(read State) Op { return Op{Kind: KindGet, Read: read, Outcome: OK} }

// The checker must refuse the histories the chaos run is there to catch, and accept what an
// unknown outcome allows.
func TestCheckerCatchesLostStaleAndPartialWrites(t *testing.T) {
	for _, c := range []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"acknowledged apply then read", []Op{at(apl(State{"a": 1}, OK), 0, 10), at(get(State{"a": 1}), 20, 30)}, porcupine.Ok},
		{"acknowledged apply lost", []Op{at(apl(State{"a": 1}, OK), 0, 10), at(get(State{}), 20, 30)}, porcupine.Illegal},
		{"read goes back in time", []Op{at(apl(State{"a": 1}, OK), 0, 10), at(apl(State{"a": 2}, OK), 20, 30),
			at(get(State{"a": 2}), 40, 50), at(get(State{"a": 1}), 60, 70)}, porcupine.Illegal},
		{"failed apply partly visible", []Op{at(apl(State{"a": 1, "b": 1}, Failed), 0, 10), at(get(State{"a": 1}), 20, 30)}, porcupine.Illegal},
		{"unknown apply partly visible", []Op{at(apl(State{"a": 1, "b": 1}, Unknown), 0, 10), at(get(State{"a": 1}), 20, 30)}, porcupine.Illegal},
		{"unknown apply visible later", []Op{at(apl(State{"a": 1}, Unknown), 0, 10), at(get(State{}), 20, 30), at(get(State{"a": 1}), 40, 50)}, porcupine.Ok},
		{"unknown apply visible after its caller gave up", []Op{at(apl(State{"a": 1}, Unknown), 0, 10), at(get(State{}), 20, 30),
			at(apl(State{"b": 2}, OK), 40, 50), at(get(State{"a": 1, "b": 2}), 60, 70)}, porcupine.Ok},
		{"unknown apply never visible", []Op{at(apl(State{"a": 1}, Unknown), 0, 10), at(get(State{}), 20, 30)}, porcupine.Ok},
		{"delete of a missing name refused whole", []Op{at(apl(State{"a": 1}, OK), 0, 10), at(del(Failed, "a", "b"), 20, 30),
			at(get(State{"a": 1}), 40, 50)}, porcupine.Ok},
		{"refused delete took effect", []Op{at(apl(State{"a": 1}, OK), 0, 10), at(del(Failed, "a"), 20, 30)}, porcupine.Illegal},
		{"delete of a present name refused without quorum", []Op{at(apl(State{"a": 1}, OK), 0, 10),
			at(Op{Kind: KindDelete, Deletes: []string{"a"}, Outcome: Failed, Code: codes.Unavailable}, 20, 30), at(get(State{"a": 1}), 40, 50)}, porcupine.Ok},
		{"delete refused without quorum took effect", []Op{at(apl(State{"a": 1}, OK), 0, 10),
			at(Op{Kind: KindDelete, Deletes: []string{"a"}, Outcome: Failed, Code: codes.Unavailable}, 20, 30), at(get(State{}), 40, 50)}, porcupine.Illegal},
	} {
		if got, _ := Check(State{}, c.ops, 10*time.Second); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

func TestAckedLostCountsOnlyUnsupersededWrites(t *testing.T) {
	ops := []Op{at(apl(State{"a": 1}, OK), 0, 10), at(apl(State{"b": 1}, OK), 0, 10), at(apl(State{"b": 2}, Unknown), 20, 30)}
	if lost, detail := AckedLost(ops, State{"b": 1}); lost != 1 {
		t.Errorf("lost %d (%v), want 1: a's acknowledged apply is missing; b's may be superseded by the unknown one", lost, detail)
	}
	if lost, detail := AckedLost(ops, State{"a": 1}); lost != 0 {
		t.Errorf("lost %d (%v), want 0", lost, detail)
	}
}

// TestClassifyKnowsWhatWasNotWritten checks which errors are definite failures: refusals made
// before anything is written, including the store's no-leader refusal; a bare Unavailable or a
// timeout may hide a commit.
func TestClassifyKnowsWhatWasNotWritten(t *testing.T) {
	for _, c := range []struct {
		err  error
		want Outcome
	}{
		{nil, OK},
		{status.Error(codes.InvalidArgument, "spec.vips[0]: bad"), Failed},
		{status.Error(codes.Unavailable, "store: read objects: "+store.ErrNoLeader.Error()+" (no answer)"), Failed},
		{status.Error(codes.Unavailable, "store: commit: etcdserver: request timed out"), Unknown},
		{status.Error(codes.DeadlineExceeded, "context deadline exceeded"), Unknown},
	} {
		if got, _ := Classify(c.err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}
