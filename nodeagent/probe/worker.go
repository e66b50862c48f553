package probe

import (
	"context"
	"fmt"
	"strings"
	"time"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// run probes one endpoint until ctx ends. An endpoint starts ready, as it is stored; it turns not
// ready after failureThreshold failures in a row and ready again after successThreshold passes.
// A check this agent refuses to run is logged once, here, and then fails every period without
// doing anything: the endpoint is taken out as if its check failed, and the log is not flooded.
func (p *Prober) run(ctx context.Context, key string, state *v1.EndpointHealth, hc *v1.HealthCheck, port uint32) {
	period := time.Duration(orU(hc.GetPeriodSeconds(), 10)) * p.tick
	timeout := time.Duration(orU(hc.GetTimeoutSeconds(), 1)) * time.Second
	success, failure := orU(hc.GetSuccessThreshold(), 1), orU(hc.GetFailureThreshold(), 3)
	probe, err := p.compile(hc, state.Address, port)
	if err != nil {
		p.log.Warn("health check refused: counted as failing",
			"service", state.Namespace+"/"+state.Service, "endpoint", state.Address, "err", err)
		probe = func(context.Context) error { return fmt.Errorf("refused by this agent: %w", err) }
	}
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(hc.GetInitialDelaySeconds()) * p.tick):
	}
	t := time.NewTicker(period)
	defer t.Stop()
	var passes, fails uint32
	for {
		failed := probeOnce(ctx, probe, timeout)
		if failed == nil {
			passes, fails = passes+1, 0
		} else {
			passes, fails = 0, fails+1
		}
		if flip := (state.Ready && fails >= failure) || (!state.Ready && passes >= success); flip {
			next := &v1.EndpointHealth{Namespace: state.Namespace, Service: state.Service, Address: state.Address, Ready: !state.Ready}
			if failed != nil {
				next.Message = failureMessage(failed)
			}
			// Update cancels workers under mu: checking ctx under it too keeps a stopped worker
			// from recording a result after its endpoint was removed.
			p.mu.Lock()
			if ctx.Err() != nil {
				p.mu.Unlock()
				return
			}
			p.results[key] = next
			p.mu.Unlock()
			state = next
			p.report(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// probeOnce runs one check within its timeout.
func probeOnce(ctx context.Context, probe checker, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := probe(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("no answer within %s", timeout)
		}
		return err
	}
	return nil
}

// maxMessage bounds what one failure tells the brain: enough to name the cause.
const maxMessage = 256

// failureMessage is the reason a probe failed, as the brain stores and describe shows it.
func failureMessage(err error) string {
	m := err.Error()
	if len(m) > maxMessage {
		m = strings.ToValidUTF8(m[:maxMessage], "") + "..."
	}
	return m
}

func orU(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}
