// Package probe runs the bare-metal health checks of the endpoints on this node, the way the
// kubelet runs readiness probes, and reports each transition. Probing is never centralized: every
// agent probes only its own node's endpoints, so the load and the failure domain stay local.
//
// The checks come from the brain, so they are untrusted input run as root: an HTTP or TCP probe
// goes only to the endpoint's own address, and an exec probe runs only a command the operator
// allowed on this agent (Options.ExecAllow), without a shell.
package probe

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"time"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Options configures a Prober. The zero value runs HTTP and TCP checks and refuses every exec
// check.
type Options struct {
	// ExecAllow are the absolute command paths exec checks may run (the agent's --exec-allow). A
	// check runs only when its command[0] is exactly one of them; its arguments are the brain's,
	// so allow only programs that are harmless with any arguments. Entries ValidateExecAllow
	// refuses are dropped.
	ExecAllow []string
	// ExecCredential, when set, is the user and group exec checks run as (the agent's
	// --exec-user, nobody by default): an allowed program still gets the brain's arguments, so it
	// should not also get root. Nil runs them as the agent's own user.
	ExecCredential *syscall.Credential
	// Log hears of checks that are refused (once per endpoint) and of dropped allowlist entries.
	// Nil discards.
	Log *slog.Logger
}

// Prober keeps one worker per probed endpoint.
type Prober struct {
	report    func(*v1.EndpointHealth)
	execAllow map[string]bool
	execCred  *syscall.Credential
	log       *slog.Logger
	// tick is how long one of a check's periodSeconds or initialDelaySeconds lasts: a second,
	// except in tests, which shorten it so that many periods pass quickly.
	tick time.Duration

	mu      sync.Mutex
	workers map[string]*worker // namespace/service/address -> worker
	results map[string]*v1.EndpointHealth
}

// New returns a prober; report hears of every transition, from the workers' goroutines. opts is
// optional (at most one; the zero Options when left out) so that callers that run no exec checks
// need not name it.
func New(report func(*v1.EndpointHealth), opts ...Options) *Prober {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	p := &Prober{report: report, execAllow: map[string]bool{}, execCred: o.ExecCredential, log: o.Log, tick: time.Second,
		workers: map[string]*worker{}, results: map[string]*v1.EndpointHealth{}}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	for _, path := range o.ExecAllow {
		if err := ValidateExecAllow([]string{path}); err != nil {
			p.log.Error("exec allowlist entry dropped", "err", err)
			continue
		}
		p.execAllow[path] = true
	}
	return p
}

// ExecAllowed returns the commands exec checks may run, sorted.
func (p *Prober) ExecAllowed() []string {
	out := make([]string, 0, len(p.execAllow))
	for path := range p.execAllow {
		out = append(out, path)
	}
	slices.Sort(out)
	return out
}

type worker struct {
	spec   string // what the worker probes, to restart it when that changes
	cancel context.CancelFunc
}

// Update replaces the set of probed endpoints with those of sets.
func (p *Prober) Update(sets []*v1.ProbeSet) {
	p.mu.Lock()
	defer p.mu.Unlock()
	want := map[string]bool{}
	for _, ps := range sets {
		for _, t := range ps.Targets {
			key := ps.Namespace + "/" + ps.Service + "/" + t.Address
			want[key] = true
			spec := fmt.Sprintf("%v|%d", ps.Check, t.Port)
			if w := p.workers[key]; w != nil && w.spec == spec {
				continue
			} else if w != nil {
				w.cancel()
			}
			ctx, cancel := context.WithCancel(context.Background())
			p.workers[key] = &worker{spec: spec, cancel: cancel}
			// A changed check goes on from the endpoint's last result: starting over at ready would
			// leave a not-ready record at the brain that no transition of the new worker clears.
			state := &v1.EndpointHealth{Namespace: ps.Namespace, Service: ps.Service, Address: t.Address, Ready: true}
			if last := p.results[key]; last != nil {
				state.Ready = last.Ready
			}
			go p.run(ctx, key, state, ps.Check, t.Port)
		}
	}
	for key, w := range p.workers {
		if !want[key] {
			w.cancel()
			delete(p.workers, key)
			delete(p.results, key)
		}
	}
}

// Results returns the last known result of every probed endpoint, to repeat after reconnecting.
func (p *Prober) Results() []*v1.EndpointHealth {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*v1.EndpointHealth, 0, len(p.results))
	for _, r := range p.results {
		out = append(out, r)
	}
	return out
}

// Close stops every worker.
func (p *Prober) Close() { p.Update(nil) }
