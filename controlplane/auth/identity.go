// Package auth decides who a caller of the brain is and what it may call. Callers prove who they
// are with a client certificate from the Ganglion CA (bare metal, operators) or, in Kubernetes
// mode, with a ServiceAccount token the API server vouches for (agents). An unauthenticated peer
// may ask for health and nothing else; every refusal is logged with the identity and counted.
package auth

import (
	"context"
	"fmt"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// Identity is an authenticated caller.
type Identity struct {
	Role pki.Role
	// Name is the node's name for RoleNode, the operator's for the others.
	Name string
	// Via says how it was proven: "x509", "token" or "insecure".
	Via string
}

// Anonymous is the identity of a caller that proved nothing.
var Anonymous = Identity{Via: "none"}

// insecureIdentity is every caller of a brain started with --insecure, which listens on
// loopback only: whoever can reach it is on the brain's host already.
var insecureIdentity = Identity{Role: pki.RoleAdmin, Name: "insecure-loopback", Via: "insecure"}

func (id Identity) String() string {
	if id.Role == "" {
		return "anonymous"
	}
	return fmt.Sprintf("%s:%s (%s)", id.Role, id.Name, id.Via)
}

// MayStreamAs says whether the identity may open node's stream: a node only its own; the
// insecure loopback identity any, as there is nothing to tell callers apart.
func (id Identity) MayStreamAs(node string) bool {
	if id.Via == insecureIdentity.Via {
		return true
	}
	return id.Role == pki.RoleNode && id.Name == node
}

type ctxKey struct{}

// NewContext returns ctx carrying id.
func NewContext(ctx context.Context, id Identity) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// FromContext returns the identity the interceptors found for this call; Anonymous when none.
func FromContext(ctx context.Context) Identity {
	if id, ok := ctx.Value(ctxKey{}).(Identity); ok {
		return id
	}
	return Anonymous
}
