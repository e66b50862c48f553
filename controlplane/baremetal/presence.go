package baremetal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"

	"github.com/ganglion-proxy/ganglion/store"
)

// connectedPrefix holds one key per agent stream: connected/<node>/<session>, under the
// session's lease, deleted the moment the stream ends. A node is live while it has one. The
// node's registration (leases/<node>) outlives a stream by its TTL so that a reconnecting agent
// does not take its endpoints out; announcements cannot wait that long, since an outside client
// would keep sending to a node whose agent no longer answers for the address.
const connectedPrefix = "connected/"

// presence is one stream's connected key.
type presence struct{ path string }

func newPresence(node string) presence {
	var id [8]byte
	_, _ = rand.Read(id[:])
	return presence{path: connectedPrefix + node + "/" + hex.EncodeToString(id[:])}
}

// mark writes the key under the session's lease: a lease the store re-establishes carries it
// again, and it goes with the lease if the brain dies.
func (p presence) mark(l *store.Lease) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return l.Put(ctx, p.path, nil)
}

// clear deletes the key when the stream ends.
func (p presence) clear(l *store.Lease) error {
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	defer cancel()
	return l.Delete(ctx, p.path)
}

// parseConnected splits connected/<node>/<session> (prefix removed) into its node and session.
func parseConnected(rest string) (node, session string, ok bool) {
	node, session, ok = strings.Cut(rest, "/")
	return node, session, ok && node != "" && session != ""
}
