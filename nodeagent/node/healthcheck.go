package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/ganglion-proxy/ganglion/nodeagent/dataplane"
)

// HealthChecks serves every healthCheckNodePort of the ports the node holds, the way kube-proxy
// does, so cloud load balancers send externalTrafficPolicy Local traffic only to nodes with a
// ready local endpoint: 200 with a positive count, 503 otherwise or when the agent is unhealthy.
type HealthChecks struct {
	log     *slog.Logger
	healthy func() bool
	// listen opens a port's listener; tests replace it.
	listen func(port uint16) (net.Listener, error)

	mu      sync.Mutex
	ports   map[string]hcPort    // base -> what it asks for
	servers map[uint16]*hcServer // port -> running server
}

type hcPort struct {
	port      uint16
	namespace string
	name      string
	local     int
}

type hcServer struct {
	srv       *http.Server
	namespace string
	name      string
	local     int
}

// NewHealthChecks returns a manager; healthy reports the agent's own health.
func NewHealthChecks(log *slog.Logger, healthy func() bool) *HealthChecks {
	return &HealthChecks{
		log: log, healthy: healthy,
		listen:  func(p uint16) (net.Listener, error) { return net.Listen("tcp", ":"+strconv.Itoa(int(p))) },
		ports:   map[string]hcPort{},
		servers: map[uint16]*hcServer{},
	}
}

// Update follows a change applied to the dataplane. Ports that failed to apply keep their old
// entry, like their rules.
func (h *HealthChecks) Update(c dataplane.Change, failed map[string]error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, p := range c.Upserts {
		if failed[p.Base] != nil {
			continue
		}
		if hc := p.Service.GetHealthCheckNodePort(); hc != 0 {
			h.ports[p.Base] = hcPort{port: uint16(hc), namespace: p.Service.Namespace, name: p.Service.Name, local: int(p.Local.GetLocalReadyEndpoints())}
		} else {
			delete(h.ports, p.Base)
		}
	}
	for _, b := range c.Removals {
		if failed[b] == nil {
			delete(h.ports, b)
		}
	}
	h.reconcile()
}

// reconcile starts and stops servers to match the ports. A service's ports and families share
// one health check port; it counts the most local endpoints any of them has.
func (h *HealthChecks) reconcile() {
	want := map[uint16]hcPort{}
	for _, p := range h.ports {
		if w, ok := want[p.port]; !ok || p.local > w.local {
			want[p.port] = p
		}
	}
	for port, s := range h.servers {
		if _, ok := want[port]; !ok {
			_ = s.srv.Shutdown(context.Background())
			delete(h.servers, port)
		}
	}
	for port, p := range want {
		if s, ok := h.servers[port]; ok {
			s.namespace, s.name, s.local = p.namespace, p.name, p.local
			continue
		}
		lis, err := h.listen(port)
		if err != nil {
			h.log.Error("healthCheckNodePort not served", "port", port, "service", p.namespace+"/"+p.name, "err", err)
			continue
		}
		s := &hcServer{namespace: p.namespace, name: p.name, local: p.local}
		s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { h.serve(w, port) }), ReadHeaderTimeout: 5 * time.Second}
		h.servers[port] = s
		go func() {
			if err := s.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
				h.log.Error("healthCheckNodePort server", "port", port, "err", err)
			}
		}()
	}
}

func (h *HealthChecks) serve(w http.ResponseWriter, port uint16) {
	h.mu.Lock()
	s := h.servers[port]
	var ns, name string
	var local int
	if s != nil {
		ns, name, local = s.namespace, s.name, s.local
	}
	h.mu.Unlock()
	healthy := h.healthy()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(local))
	if local > 0 && healthy {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	body := map[string]any{
		"service":             map[string]string{"namespace": ns, "name": name},
		"localEndpoints":      local,
		"serviceProxyHealthy": healthy,
	}
	if err := json.NewEncoder(w).Encode(body); err != nil {
		h.log.Debug("health check reply", "err", fmt.Errorf("write: %w", err))
	}
}

// Close stops every server.
func (h *HealthChecks) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for port, s := range h.servers {
		_ = s.srv.Close()
		delete(h.servers, port)
	}
}
