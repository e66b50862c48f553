package baremetal

import (
	"context"
	"encoding/json"
	"time"

	"github.com/ganglion-proxy/ganglion/store"
)

// healthPrefix is where probe results live in the store: health/<ns>/<service>/<address>.
const healthPrefix = "health/"

// healthRecord is one backend's probe result as the brain records it.
type healthRecord struct {
	Ready bool `json:"ready"`
	// Node is the agent that probed it.
	Node  string    `json:"node"`
	Since time.Time `json:"since"`
}

// RecordHealth stores a backend's probe result reported by the agent of node. A passing backend's
// record is removed: passing is the default.
func RecordHealth(ctx context.Context, st *store.Store, namespace, service, address, node string, ready bool) error {
	path := healthPrefix + namespace + "/" + service + "/" + address
	if ready {
		return st.DeleteRaw(ctx, path)
	}
	b, err := json.Marshal(healthRecord{Ready: false, Node: node, Since: time.Now().UTC()})
	if err != nil {
		return err
	}
	return st.PutRaw(ctx, path, b)
}
