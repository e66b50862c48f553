// Package probe runs the bare-metal health checks of the endpoints on this node, the way the
// kubelet runs readiness probes, and reports each transition. Probing is never centralized: every
// agent probes only its own node's endpoints, so the load and the failure domain stay local.
package probe

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Prober keeps one worker per probed endpoint.
type Prober struct {
	report func(*v1.EndpointHealth)

	mu      sync.Mutex
	workers map[string]*worker // namespace/service/address -> worker
	results map[string]*v1.EndpointHealth
}

// New returns a prober; report hears of every transition, from the workers' goroutines.
func New(report func(*v1.EndpointHealth)) *Prober {
	return &Prober{report: report, workers: map[string]*worker{}, results: map[string]*v1.EndpointHealth{}}
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
			go p.run(ctx, key, &v1.EndpointHealth{Namespace: ps.Namespace, Service: ps.Service, Address: t.Address, Ready: true}, ps.Check, t.Port)
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

// run probes one endpoint until ctx ends. An endpoint starts ready, as it is stored; it turns not
// ready after failureThreshold failures in a row and ready again after successThreshold passes.
func (p *Prober) run(ctx context.Context, key string, state *v1.EndpointHealth, hc *v1.HealthCheck, port uint32) {
	period := seconds(hc.GetPeriodSeconds(), 10)
	timeout := seconds(hc.GetTimeoutSeconds(), 1)
	success, failure := orU(hc.GetSuccessThreshold(), 1), orU(hc.GetFailureThreshold(), 3)
	select {
	case <-ctx.Done():
		return
	case <-time.After(seconds(hc.GetInitialDelaySeconds(), 0)):
	}
	t := time.NewTicker(period)
	defer t.Stop()
	var passes, fails uint32
	for {
		ok := check(ctx, hc, state.Address, port, timeout)
		if ok {
			passes, fails = passes+1, 0
		} else {
			passes, fails = 0, fails+1
		}
		if flip := (state.Ready && fails >= failure) || (!state.Ready && passes >= success); flip && ctx.Err() == nil {
			next := &v1.EndpointHealth{Namespace: state.Namespace, Service: state.Service, Address: state.Address, Ready: !state.Ready}
			state = next
			p.mu.Lock()
			p.results[key] = next
			p.mu.Unlock()
			p.report(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check runs one probe.
func check(ctx context.Context, hc *v1.HealthCheck, addr string, port uint32, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	hostPort := func(p uint32) string {
		if p == 0 {
			p = port
		}
		return net.JoinHostPort(addr, strconv.Itoa(int(p)))
	}
	switch a := hc.GetAction().(type) {
	case *v1.HealthCheck_HttpGet:
		scheme := "http"
		if a.HttpGet.Scheme == "HTTPS" {
			scheme = "https"
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+hostPort(a.HttpGet.Port)+a.HttpGet.Path, nil)
		if err != nil {
			return false
		}
		req.Header.Set("User-Agent", "ganglion-probe")
		// Like kubelet probes: no certificate checks, no keep-alive, redirects are not followed.
		client := &http.Client{
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, DisableKeepAlives: true}, //nolint:gosec // probes do not verify, as kubelet's do not
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode >= 200 && resp.StatusCode < 400
	case *v1.HealthCheck_TcpSocket:
		c, err := (&net.Dialer{}).DialContext(ctx, "tcp", hostPort(a.TcpSocket.Port))
		if err != nil {
			return false
		}
		c.Close()
		return true
	case *v1.HealthCheck_Exec:
		if len(a.Exec.Command) == 0 {
			return false
		}
		cmd := exec.CommandContext(ctx, a.Exec.Command[0], a.Exec.Command[1:]...)
		cmd.Env = append(os.Environ(), "PROBE_ADDRESS="+addr, "PROBE_PORT="+strconv.Itoa(int(port)))
		return cmd.Run() == nil
	}
	return false
}

func seconds(v, def uint32) time.Duration {
	if v == 0 {
		v = def
	}
	return time.Duration(v) * time.Second
}

func orU(v, def uint32) uint32 {
	if v == 0 {
		return def
	}
	return v
}
