package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authnclient "k8s.io/client-go/kubernetes/typed/authentication/v1"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

// NodeNameExtra is the key under which the API server names the node of the pod a token is
// bound to (a projected ServiceAccount token of a scheduled pod carries it).
const NodeNameExtra = "authentication.kubernetes.io/node-name"

// Reasons a token proves nothing. Each refusal wraps one of them, so the log says why.
var (
	// ErrTokenInvalid: the API server does not vouch for the token (bad signature, expired,
	// its bound pod deleted, an audience it was not issued for).
	ErrTokenInvalid = errors.New("token not authenticated")
	// ErrWrongAudience: the token was not issued for the brain's audience.
	ErrWrongAudience = errors.New("token not issued for this audience")
	// ErrWrongServiceAccount: the token is valid but belongs to someone other than the agents.
	ErrWrongServiceAccount = errors.New("token of another identity than the agents' ServiceAccount")
	// ErrNotBoundToNode: the token is not bound to a pod scheduled on a node, so it names no node.
	ErrNotBoundToNode = errors.New("token not bound to a pod on a node")
	// ErrTokenReview: asking the API server failed; the token may be fine.
	ErrTokenReview = errors.New("token review failed")
)

// TokenReviewOptions configure a TokenReviewer. Zero values take the defaults.
type TokenReviewOptions struct {
	// Audience the token must be issued for (default "ganglion"): a token for the API server or
	// anyone else is no good here, and ours is no good there.
	Audience string
	// ServiceAccount is the agents' "namespace/name" (default ganglion-system/ganglion-agent).
	ServiceAccount string
	// CacheSize bounds the cache (default 4096 entries); the oldest entry goes first.
	CacheSize int
	// TTL is how long a vouched-for token is believed without asking again (default 1 minute,
	// shorter when the token expires sooner). It bounds how late a revocation is noticed.
	TTL time.Duration
	// NegativeTTL is how long a refusal is remembered (default 5 seconds): long enough that a
	// reconnecting agent with a bad token costs one review per interval, short enough that a fixed
	// token (RBAC granted, pod scheduled) is accepted soon.
	NegativeTTL time.Duration
	// Timeout bounds one TokenReview request (default 10 seconds).
	Timeout time.Duration
	// Now is the clock (default time.Now), for tests.
	Now func() time.Time
}

// TokenReviewer authenticates agents' projected ServiceAccount tokens with the Kubernetes
// TokenReview API and caches the answers, so a reconnect storm costs one review per token.
type TokenReviewer struct {
	client   authnclient.TokenReviewInterface
	opts     TokenReviewOptions
	username string

	mu       sync.Mutex
	cache    map[[sha256.Size]byte]*reviewEntry
	order    []slot // insertion order, oldest first, for eviction
	seq      uint64
	inflight map[[sha256.Size]byte]*review
}

// slot is one insertion into the cache; it evicts its key only if no later insertion replaced
// the entry it made.
type slot struct {
	key [sha256.Size]byte
	seq uint64
}

// reviewEntry is a remembered answer. Only a hash of the token is kept, never the token: a dump
// of the brain's memory yields no credential.
type reviewEntry struct {
	id      Identity
	err     error
	expires time.Time
	seq     uint64
}

// review is a TokenReview in flight; concurrent callers with the same token wait for it.
type review struct {
	done chan struct{}
	id   Identity
	err  error
}

var _ TokenAuthenticator = (*TokenReviewer)(nil)

// NewTokenReviewer returns an authenticator that asks client (the API server's TokenReview
// resource) about each token it has not seen lately.
func NewTokenReviewer(client authnclient.TokenReviewInterface, opts TokenReviewOptions) (*TokenReviewer, error) {
	if opts.Audience == "" {
		opts.Audience = "ganglion"
	}
	if opts.ServiceAccount == "" {
		opts.ServiceAccount = "ganglion-system/ganglion-agent"
	}
	ns, name, ok := strings.Cut(opts.ServiceAccount, "/")
	if !ok || ns == "" || name == "" || strings.Contains(name, "/") {
		return nil, fmt.Errorf("agent service account %q: want namespace/name", opts.ServiceAccount)
	}
	if opts.CacheSize <= 0 {
		opts.CacheSize = 4096
	}
	if opts.TTL <= 0 {
		opts.TTL = time.Minute
	}
	if opts.NegativeTTL <= 0 {
		opts.NegativeTTL = 5 * time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &TokenReviewer{
		client: client, opts: opts,
		username: "system:serviceaccount:" + ns + ":" + name,
		cache:    map[[sha256.Size]byte]*reviewEntry{},
		inflight: map[[sha256.Size]byte]*review{},
	}, nil
}

// AuthenticateToken implements TokenAuthenticator: the node the token's pod is bound to, from
// the cache or from one TokenReview shared by every concurrent caller with the same token.
func (r *TokenReviewer) AuthenticateToken(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	r.mu.Lock()
	if e, ok := r.cache[key]; ok {
		if r.opts.Now().Before(e.expires) {
			r.mu.Unlock()
			return e.id, e.err
		}
		delete(r.cache, key) // its slot in order is skipped when it reaches the front
	}
	rv, running := r.inflight[key]
	if !running {
		rv = &review{done: make(chan struct{})}
		r.inflight[key] = rv
	}
	r.mu.Unlock()

	if !running {
		go r.run(ctx, key, token, rv)
	}
	select {
	case <-rv.done:
		return rv.id, rv.err
	case <-ctx.Done():
		return Anonymous, fmt.Errorf("%w: %w", ErrTokenReview, ctx.Err())
	}
}

// run asks the API server and publishes the answer to the waiters and the cache. It outlives
// the caller that started it (bounded by the timeout): the others waiting need the answer too.
func (r *TokenReviewer) run(ctx context.Context, key [sha256.Size]byte, token string, rv *review) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.opts.Timeout)
	defer cancel()
	rv.id, rv.err = r.review(ctx, token)

	r.mu.Lock()
	delete(r.inflight, key)
	if ttl := r.ttlOf(token, rv.err); ttl > 0 {
		r.remember(key, &reviewEntry{id: rv.id, err: rv.err, expires: r.opts.Now().Add(ttl)})
	}
	r.mu.Unlock()
	close(rv.done)
}

// ttlOf is how long an answer is kept: a failure to ask not at all (the next caller asks
// again), a refusal briefly, an identity for the TTL but never past the token's own expiry.
func (r *TokenReviewer) ttlOf(token string, err error) time.Duration {
	switch {
	case errors.Is(err, ErrTokenReview):
		return 0
	case err != nil:
		return r.opts.NegativeTTL
	}
	ttl := r.opts.TTL
	if exp, ok := unverifiedExpiry(token); ok {
		ttl = min(ttl, exp.Sub(r.opts.Now()))
	}
	return ttl
}

// remember stores e under key, evicting the oldest entries beyond the size bound. Called with
// r.mu held.
func (r *TokenReviewer) remember(key [sha256.Size]byte, e *reviewEntry) {
	r.seq++
	e.seq = r.seq
	r.cache[key] = e
	r.order = append(r.order, slot{key: key, seq: e.seq})
	// Slots of entries dropped on expiry or replaced stay in order until they reach its front;
	// bounding order too keeps them from piling up.
	for len(r.cache) > r.opts.CacheSize || len(r.order) > 2*r.opts.CacheSize {
		oldest := r.order[0]
		r.order = r.order[1:]
		if e, ok := r.cache[oldest.key]; ok && e.seq == oldest.seq {
			delete(r.cache, oldest.key)
		}
	}
}

// review asks the API server about token and applies the agents' rules to its answer.
func (r *TokenReviewer) review(ctx context.Context, token string) (Identity, error) {
	tr, err := r.client.Create(ctx, &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{r.opts.Audience}},
	}, metav1.CreateOptions{})
	if err != nil {
		return Anonymous, fmt.Errorf("%w: %w", ErrTokenReview, err)
	}
	st := tr.Status
	if !st.Authenticated {
		// The API server checks the audiences itself and says so only in its message.
		if strings.Contains(st.Error, "audience") {
			return Anonymous, fmt.Errorf("%w (want %q): %s", ErrWrongAudience, r.opts.Audience, st.Error)
		}
		return Anonymous, fmt.Errorf("%w: %s", ErrTokenInvalid, st.Error)
	}
	// An authenticator that ignores audiences answers with none: such a token may have been
	// issued for anyone, so it proves nothing here.
	if !slices.Contains(st.Audiences, r.opts.Audience) {
		return Anonymous, fmt.Errorf("%w: want %q, the API server confirmed %q", ErrWrongAudience, r.opts.Audience, st.Audiences)
	}
	if st.User.Username != r.username {
		return Anonymous, fmt.Errorf("%w: %q, want %q", ErrWrongServiceAccount, st.User.Username, r.username)
	}
	nodes := st.User.Extra[NodeNameExtra]
	if len(nodes) != 1 || nodes[0] == "" {
		return Anonymous, fmt.Errorf("%w: %s has no %s", ErrNotBoundToNode, st.User.Username, NodeNameExtra)
	}
	if err := pki.ValidName(nodes[0]); err != nil {
		return Anonymous, fmt.Errorf("%w: %w", ErrNotBoundToNode, err)
	}
	return Identity{Role: pki.RoleNode, Name: nodes[0], Via: "token"}, nil
}

// unverifiedExpiry reads the exp claim of a JWT without checking its signature. It is used only
// to keep a cached answer no longer than the token lives; the API server has verified the token,
// and a forged exp can only shorten its own caching.
func unverifiedExpiry(token string) (time.Time, bool) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}, false
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return time.Time{}, false
	}
	var claims struct {
		Exp *int64 `json:"exp"`
	}
	if json.Unmarshal(payload, &claims) != nil || claims.Exp == nil {
		return time.Time{}, false
	}
	return time.Unix(*claims.Exp, 0), true
}
