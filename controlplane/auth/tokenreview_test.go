package auth

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/ganglion-proxy/ganglion/internal/pki"
)

const agentUser = "system:serviceaccount:ganglion-system:ganglion-agent"

// fakeAPI answers TokenReviews from a table of tokens, as the API server would, and counts the
// requests it gets.
type fakeAPI struct {
	mu       sync.Mutex
	statuses map[string]authnv1.TokenReviewStatus
	fail     error
	// gate, when set, holds every review until it is closed.
	gate     chan struct{}
	requests atomic.Int64
}

func (f *fakeAPI) set(token string, st authnv1.TokenReviewStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses[token] = st
}

// newReviewer returns a TokenReviewer over a fake clientset whose TokenReviews f answers.
func newReviewer(t *testing.T, opts TokenReviewOptions) (*TokenReviewer, *fakeAPI) {
	t.Helper()
	f := &fakeAPI{statuses: map[string]authnv1.TokenReviewStatus{}}
	cs := fake.NewClientset()
	cs.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		f.requests.Add(1)
		if f.gate != nil {
			<-f.gate
		}
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.fail != nil {
			return true, nil, f.fail
		}
		if len(tr.Spec.Audiences) != 1 || tr.Spec.Audiences[0] != "ganglion" {
			return true, nil, fmt.Errorf("review asked for audiences %q, want [ganglion]", tr.Spec.Audiences)
		}
		st, ok := f.statuses[tr.Spec.Token]
		if !ok {
			st = authnv1.TokenReviewStatus{Error: "invalid bearer token"}
		}
		tr.Status = st
		return true, tr, nil
	})
	r, err := NewTokenReviewer(cs.AuthenticationV1().TokenReviews(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return r, f
}

// agentStatus is the API server's answer for a projected token of the agents' ServiceAccount
// bound to a pod on node.
func agentStatus(node string) authnv1.TokenReviewStatus {
	extra := map[string]authnv1.ExtraValue{"authentication.kubernetes.io/pod-name": {"ganglion-agent-x"}}
	if node != "" {
		extra[NodeNameExtra] = authnv1.ExtraValue{node}
	}
	return authnv1.TokenReviewStatus{
		Authenticated: true, Audiences: []string{"ganglion"},
		User: authnv1.UserInfo{Username: agentUser, Extra: extra},
	}
}

func TestTokenReviewRules(t *testing.T) {
	wrongSA := agentStatus("node-a")
	wrongSA.User.Username = "system:serviceaccount:default:builder"
	otherNS := agentStatus("node-a")
	otherNS.User.Username = "system:serviceaccount:other:ganglion-agent"
	noAudience := agentStatus("node-a")
	noAudience.Audiences = nil
	badName := agentStatus("Node_A")
	cases := []struct {
		name   string
		status authnv1.TokenReviewStatus
		want   error
	}{
		{"an agent's token bound to a pod on a node names that node", agentStatus("node-a"), nil},
		{"a token the API server does not vouch for", authnv1.TokenReviewStatus{Error: "token has expired"}, ErrTokenInvalid},
		{"a token issued for another audience", authnv1.TokenReviewStatus{Error: `token audiences ["api"] is invalid for the target audiences ["ganglion"]`}, ErrWrongAudience},
		{"an authenticator that confirms no audience", noAudience, ErrWrongAudience},
		{"another ServiceAccount", wrongSA, ErrWrongServiceAccount},
		{"the agents' name in another namespace", otherNS, ErrWrongServiceAccount},
		{"a token not bound to a scheduled pod", agentStatus(""), ErrNotBoundToNode},
		{"a node name that is no node name", badName, ErrNotBoundToNode},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r, api := newReviewer(t, TokenReviewOptions{})
			api.set("tok", tc.status)
			id, err := r.AuthenticateToken(context.Background(), "tok")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if want := (Identity{Role: pki.RoleNode, Name: "node-a", Via: "token"}); id != want {
					t.Fatalf("identity %v, want %v", id, want)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if id != Anonymous {
				t.Fatalf("a refused token proved %v", id)
			}
		})
	}
}

func TestTokenReviewAPIErrorSaysSo(t *testing.T) {
	r, api := newReviewer(t, TokenReviewOptions{})
	api.fail = errors.New(`tokenreviews.authentication.k8s.io is forbidden`)
	_, err := r.AuthenticateToken(context.Background(), "tok")
	if !errors.Is(err, ErrTokenReview) {
		t.Fatalf("err = %v, want ErrTokenReview", err)
	}
	// Not the token's fault: the next caller asks again rather than being refused from memory.
	api.mu.Lock()
	api.fail = nil
	api.mu.Unlock()
	api.set("tok", agentStatus("node-a"))
	if _, err := r.AuthenticateToken(context.Background(), "tok"); err != nil {
		t.Fatalf("after the API recovered: %v", err)
	}
}

func TestTokenReviewServiceAccountFlag(t *testing.T) {
	r, api := newReviewer(t, TokenReviewOptions{ServiceAccount: "kube-system/proxy"})
	api.set("ours", agentStatus("node-a"))
	if _, err := r.AuthenticateToken(context.Background(), "ours"); !errors.Is(err, ErrWrongServiceAccount) {
		t.Fatalf("default agent account accepted with another configured: %v", err)
	}
	st := agentStatus("node-a")
	st.User.Username = "system:serviceaccount:kube-system:proxy"
	api.set("theirs", st)
	if _, err := r.AuthenticateToken(context.Background(), "theirs"); err != nil {
		t.Fatalf("configured account refused: %v", err)
	}
	for _, bad := range []string{"ganglion-agent", "/x", "ns/", "a/b/c"} {
		if _, err := NewTokenReviewer(nil, TokenReviewOptions{ServiceAccount: bad}); err == nil {
			t.Errorf("service account %q accepted", bad)
		}
	}
}

// clock is a settable clock for cache expiry.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func TestTokenReviewCachesAnswers(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	r, api := newReviewer(t, TokenReviewOptions{TTL: time.Minute, NegativeTTL: 5 * time.Second, Now: clk.Now})
	api.set("good", agentStatus("node-a"))
	ctx := context.Background()
	for range 3 {
		if _, err := r.AuthenticateToken(ctx, "good"); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AuthenticateToken(ctx, "bad"); !errors.Is(err, ErrTokenInvalid) {
			t.Fatalf("bad token: %v", err)
		}
	}
	if n := api.requests.Load(); n != 2 {
		t.Fatalf("%d reviews for two tokens asked three times each, want 2", n)
	}

	// A refusal is remembered briefly; the bad token asks again once it is forgotten, while
	// the good one is still believed.
	clk.add(6 * time.Second)
	_, _ = r.AuthenticateToken(ctx, "bad")
	_, _ = r.AuthenticateToken(ctx, "good")
	if n := api.requests.Load(); n != 3 {
		t.Fatalf("after the negative TTL: %d reviews, want 3", n)
	}
	// Past the TTL even a good token is asked about again: a revoked one is noticed.
	clk.add(time.Minute)
	api.set("good", authnv1.TokenReviewStatus{Error: "pod deleted"})
	if _, err := r.AuthenticateToken(ctx, "good"); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("revoked token after the TTL: %v", err)
	}
}

// jwtWithExp is an unsigned JWT-shaped token whose payload says exp.
func jwtWithExp(exp time.Time) string {
	enc := base64.RawURLEncoding.EncodeToString
	return enc([]byte(`{"alg":"RS256"}`)) + "." + enc(fmt.Appendf(nil, `{"exp":%d}`, exp.Unix())) + ".sig"
}

func TestTokenReviewCacheEndsWithTheToken(t *testing.T) {
	clk := &clock{now: time.Unix(1_800_000_000, 0)}
	r, api := newReviewer(t, TokenReviewOptions{TTL: time.Minute, Now: clk.Now})
	tok := jwtWithExp(clk.Now().Add(10 * time.Second))
	api.set(tok, agentStatus("node-a"))
	_, _ = r.AuthenticateToken(context.Background(), tok)
	clk.add(11 * time.Second)
	api.set(tok, authnv1.TokenReviewStatus{Error: "token has expired"})
	if _, err := r.AuthenticateToken(context.Background(), tok); !errors.Is(err, ErrTokenInvalid) {
		t.Fatalf("an expired token believed from the cache: %v", err)
	}
	if n := api.requests.Load(); n != 2 {
		t.Fatalf("%d reviews, want 2", n)
	}
}

func TestTokenReviewCacheIsBounded(t *testing.T) {
	r, api := newReviewer(t, TokenReviewOptions{CacheSize: 8})
	ctx := context.Background()
	for i := range 100 {
		tok := fmt.Sprintf("tok-%d", i)
		api.set(tok, agentStatus("node-a"))
		if _, err := r.AuthenticateToken(ctx, tok); err != nil {
			t.Fatal(err)
		}
		r.mu.Lock()
		size, slots := len(r.cache), len(r.order)
		r.mu.Unlock()
		if size > 8 || slots > 16 {
			t.Fatalf("after %d tokens: %d entries, %d slots; bound 8", i+1, size, slots)
		}
	}
	// The newest are kept, the oldest evicted.
	before := api.requests.Load()
	_, _ = r.AuthenticateToken(ctx, "tok-99")
	if api.requests.Load() != before {
		t.Fatal("the newest token was evicted")
	}
	_, _ = r.AuthenticateToken(ctx, "tok-0")
	if api.requests.Load() != before+1 {
		t.Fatal("the oldest token is still cached")
	}
	// The cache is keyed by the token's hash: no token is held in memory.
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.cache[sha256.Sum256([]byte("tok-99"))]; !ok {
		t.Fatal("the newest token is not cached under its hash")
	}
}

func TestTokenReviewConcurrentCallersShareOneReview(t *testing.T) {
	r, api := newReviewer(t, TokenReviewOptions{})
	api.set("tok", agentStatus("node-a"))
	api.gate = make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Go(func() {
			_, err := r.AuthenticateToken(context.Background(), "tok")
			errs <- err
		})
	}
	// Wait until one review is held at the gate and every caller waits on it, then let it go.
	for api.requests.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(api.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := api.requests.Load(); n != 1 {
		t.Fatalf("%d reviews for 50 concurrent callers with one token, want 1", n)
	}
}

func TestTokenReviewCallerGivesUp(t *testing.T) {
	r, api := newReviewer(t, TokenReviewOptions{})
	api.set("tok", agentStatus("node-a"))
	api.gate = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := r.AuthenticateToken(ctx, "tok"); !errors.Is(err, context.Canceled) || !errors.Is(err, ErrTokenReview) {
		t.Fatalf("cancelled caller: %v", err)
	}
	// The review it started goes on for whoever asks next.
	close(api.gate)
	if _, err := r.AuthenticateToken(context.Background(), "tok"); err != nil {
		t.Fatal(err)
	}
	if n := api.requests.Load(); n != 1 {
		t.Fatalf("%d reviews, want 1", n)
	}
}
