package baremetal

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ganglion-proxy/ganglion/store"
)

// healthPrefix is where probe results live in the store: health/<ns>/<service>/<node>/<address>.
// The reporting node is part of the key so that no node's report replaces or clears another's.
const healthPrefix = "health/"

// healthRecord is one backend's probe result as the brain records it.
type healthRecord struct {
	Ready bool `json:"ready"`
	// Node is the agent that probed it; the source honours it only for a backend on that node.
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
	// Message is the agent's reason for the last failure (HTTP 503, connection refused, ...).
	Message string `json:"message,omitempty"`
}

// healthPath is where node's result for a backend of namespace/service is recorded.
func healthPath(namespace, service, node, address string) string {
	return servicePrefix(namespace, service) + node + "/" + address
}

// servicePrefix holds every result recorded for a service: what goes when the service goes.
func servicePrefix(namespace, service string) string {
	return healthPrefix + namespace + "/" + service + "/"
}

// RecordHealth stores a backend's probe result reported by the agent of node, through the lease
// of that agent's session: a failing record ends with the session, so neither a restarted agent
// nor a reporter that went away leaves a backend out for good. A passing backend's record is
// removed: passing is the default.
func RecordHealth(ctx context.Context, session *store.Lease, namespace, service, address, node string, ready bool, message string) error {
	path := healthPath(namespace, service, node, address)
	if ready {
		return session.Delete(ctx, path)
	}
	b, err := json.Marshal(healthRecord{Ready: false, Node: node, Since: time.Now().UTC(), Message: message})
	if err != nil {
		return err
	}
	return session.Put(ctx, path, b)
}
