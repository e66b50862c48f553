// Package chaos runs the brain against a three-member etcd cluster while members, the leader,
// quorum and brains fail, and checks every admin operation it recorded with a linearizability
// checker (porcupine) against a model of the admin API.
package chaos

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ganglion-proxy/ganglion/store"
)

// State is what the admin API holds of the workload's objects: service name -> version (the
// port the workload wrote, unique per apply). A missing name is a deleted or never applied one.
type State map[string]int

// Kind is the admin call an operation made.
type Kind int

// The admin calls the workload makes.
const (
	KindApply Kind = iota
	KindDelete
	KindGet
)

func (k Kind) String() string { return [...]string{"apply", "delete", "get"}[k] }

// Outcome is what an operation's caller learned.
type Outcome int

// An operation succeeded, failed with nothing done (a validation or not-found refusal the brain
// decides before writing), or ended without telling whether it took effect (a timeout, an
// Unavailable: the write may have reached etcd after all).
const (
	OK Outcome = iota
	Failed
	Unknown
)

// Op is one recorded admin call: its arguments, its result and when it started and ended.
type Op struct {
	Client     int
	Kind       Kind
	Puts       State    // apply: name -> version
	Deletes    []string // delete: names
	Read       State    // get: what it returned
	Outcome    Outcome
	Code       codes.Code
	Err        string
	Start, End time.Time
}

// Classify says what an error tells about an operation's effect. Only refusals the brain makes
// before it writes anything are definite failures; every other error may hide a commit.
func Classify(err error) (Outcome, codes.Code) {
	if err == nil {
		return OK, codes.OK
	}
	c := status.Code(err)
	switch c {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.Unauthenticated, codes.OutOfRange:
		return Failed, c
	}
	// The store refuses a call whose first read finds no leader (store.ErrNoLeader) before the
	// call writes anything: a definite failure, not a write that may have landed.
	if c == codes.Unavailable && strings.Contains(status.Convert(err).Message(), store.ErrNoLeader.Error()) {
		return Failed, c
	}
	return Unknown, c
}

// History records operations from concurrent clients.
type History struct {
	mu  sync.Mutex
	ops []Op
}

// Add records op.
func (h *History) Add(op Op) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
}

// Ops returns a copy of what was recorded.
func (h *History) Ops() []Op {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ops)
}

// Len is the number of recorded operations.
func (h *History) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

// output is what the model compares: a definite result, or none for an unknown outcome.
type output struct {
	outcome Outcome
	read    State
}

// model is the admin API over the workload's names: Apply stores all its objects or none,
// Delete removes all of its names or, when one is missing, none (NotFound), Get reads all.
// It is nondeterministic because an operation of unknown outcome may or may not have happened.
func model(initial State) porcupine.Model {
	nm := porcupine.NondeterministicModel{
		Init: func() []any { return []any{initial} },
		Step: func(st, in, out any) []any {
			s, op, o := st.(State), in.(*Op), out.(output)
			next, ok := apply(s, op)
			switch {
			case o.outcome == Unknown:
				if ok {
					return []any{s, next}
				}
				return []any{s}
			case o.outcome == Failed:
				// A delete refused NotFound names a missing name; every other refusal (validation,
				// the store's no-leader refusal) leaves the state as it is, whatever it is.
				if op.Kind == KindDelete && op.Code == codes.NotFound && ok {
					return nil
				}
				return []any{s}
			case op.Kind == KindGet:
				if maps.Equal(s, o.read) {
					return []any{s}
				}
				return nil
			case ok:
				return []any{next}
			}
			return nil
		},
		Equal:             func(a, b any) bool { return maps.Equal(a.(State), b.(State)) },
		DescribeOperation: func(in, out any) string { return describe(in.(*Op)) },
		DescribeState:     func(st any) string { return fmt.Sprint(st.(State)) },
	}
	return nm.ToModel()
}

// apply returns the state after op succeeded, and whether it could succeed from s.
func apply(s State, op *Op) (State, bool) {
	switch op.Kind {
	case KindApply:
		next := maps.Clone(s)
		maps.Copy(next, op.Puts)
		return next, true
	case KindDelete:
		next := maps.Clone(s)
		for _, n := range op.Deletes {
			if _, ok := next[n]; !ok {
				return s, false
			}
			delete(next, n)
		}
		return next, true
	}
	return s, true
}

func describe(op *Op) string {
	var arg string
	switch op.Kind {
	case KindApply:
		arg = fmt.Sprint(op.Puts)
	case KindDelete:
		arg = strings.Join(op.Deletes, ",")
	case KindGet:
		arg = fmt.Sprint(op.Read)
	}
	return fmt.Sprintf("%s(%s) -> %s %s", op.Kind, arg, op.Code, op.Err)
}

// Check runs porcupine over ops, starting from initial (read while no operation was in flight).
// Reads that failed tell nothing and are left out. An operation of unknown outcome may or may
// not have taken effect, and never returned: it may take effect at any time after its call.
// Checking that directly explodes when an outage leaves dozens of them, so the first pass lets
// each take effect only within its own call, a subset of what is allowed (a pass there is a pass
// of the whole); only when that fails does the second, exact pass run. late reports that only
// the exact pass succeeded: a write took effect after its caller had given up on it. The
// result is Unknown when the checker ran out of time.
func Check(initial State, ops []Op, timeout time.Duration) (res porcupine.CheckResult, late bool) {
	if res = check(initial, ops, false, timeout); res == porcupine.Ok {
		return res, false
	}
	res = check(initial, ops, true, timeout)
	return res, res == porcupine.Ok
}

func check(initial State, ops []Op, unbounded bool, timeout time.Duration) porcupine.CheckResult {
	var hist []porcupine.Operation
	for i := range ops {
		op := &ops[i]
		if op.Kind == KindGet && op.Outcome != OK {
			continue
		}
		ret := op.End.UnixNano()
		if op.Outcome == Unknown && unbounded {
			ret = math.MaxInt64
		}
		hist = append(hist, porcupine.Operation{ClientId: op.Client, Input: op, Call: op.Start.UnixNano(),
			Output: output{outcome: op.Outcome, read: op.Read}, Return: ret})
	}
	return porcupine.CheckOperationsTimeout(model(initial), hist, timeout)
}

// AckedLost counts names whose last acknowledged write is not what final holds although no
// other write to that name could have come after it: an acknowledged apply or delete lost.
func AckedLost(ops []Op, final State) (lost int, detail []string) {
	last := map[string]*Op{}
	for i := range ops {
		op := &ops[i]
		if op.Outcome != OK || op.Kind == KindGet {
			continue
		}
		for _, n := range names(op) {
			if l := last[n]; l == nil || op.End.After(l.End) {
				last[n] = op
			}
		}
	}
	for n, w := range last {
		if overwritten(ops, w, n) {
			continue
		}
		want, present := w.Puts[n]
		got, has := final[n]
		if present != has || want != got {
			lost++
			detail = append(detail, fmt.Sprintf("%s: last acknowledged %s (ended %s) wants %d/%v, final has %d/%v",
				n, w.Kind, w.End.Format(time.RFC3339Nano), want, present, got, has))
		}
	}
	slices.Sort(detail)
	return lost, detail
}

// overwritten reports whether another write to name (of any outcome but a definite failure)
// could have taken effect after w.
func overwritten(ops []Op, w *Op, name string) bool {
	for i := range ops {
		op := &ops[i]
		if op == w || op.Kind == KindGet || op.Outcome == Failed || !slices.Contains(names(op), name) {
			continue
		}
		if op.Outcome == Unknown || op.End.After(w.Start) {
			return true
		}
	}
	return false
}

func names(op *Op) []string {
	if op.Kind == KindApply {
		return slices.Collect(maps.Keys(op.Puts))
	}
	return op.Deletes
}
