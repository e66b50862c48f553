package kube

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// The refusal tests talk to replica 1 as an agent would: TLS without a client certificate, a
// bearer token, a hello. Every token is new to the brain, so no answer comes from its cache.
const secBrain = 1

// bearer sends a fixed token with each call, as the agent's --token-file does.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearer) RequireTransportSecurity() bool { return true }

// openStream opens AgentService/Stream on replica i with token (none when empty), says hello as
// node and waits for the brain's first message: nil when it sends one, the stream's error when
// it refuses.
func (c *cluster) openStream(i int, token, node string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var opts []grpc.CallOption
	if token != "" {
		opts = append(opts, grpc.PerRPCCredentials(bearer(token)))
	}
	conn := c.anonConnTo(net.JoinHostPort(brainIPs[i], brainPort))
	st, err := v1.NewAgentServiceClient(conn).Stream(ctx, opts...)
	if err != nil {
		return err
	}
	hello := &v1.StreamRequest{Message: &v1.StreamRequest_Hello{Hello: &v1.Hello{NodeName: node, AgentVersion: "e2e"}}}
	// A stream the brain has already refused ends the send with io.EOF; Recv has the reason.
	if err := st.Send(hello); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = st.Recv()
	return err
}

// wantRefused checks that err is a refusal with code whose message says why, and that the
// brain counted it under reason.
func (c *cluster) wantRefused(err error, code codes.Code, why, reason string, before float64) {
	c.t.Helper()
	s, _ := status.FromError(err)
	if err == nil || s.Code() != code || !strings.Contains(s.Message(), why) {
		c.t.Fatalf("stream: %v; want %v saying %q", err, code, why)
	}
	c.t.Logf("refused: %v", err)
	if got := c.refusals(secBrain, reason); got <= before {
		c.t.Errorf("refusals counted for %s: %v, was %v: the refusal was not counted", reason, got, before)
	}
}

// refusals sums replica i's ganglion_auth_refusals_total samples for reason.
func (c *cluster) refusals(i int, reason string) float64 {
	c.t.Helper()
	return c.metricWith(i, "ganglion_auth_refusals_total", `reason="`+reason+`"`)
}

// testTokenNodeBinding: a token bound to a pod on node-1 opens node-1's stream, and asking for
// node-2's with it is refused: the node comes from the token, not from the hello.
func (c *cluster) testTokenNodeBinding(t *testing.T) {
	tok := c.boundToken(agentSA, c.createPod("sec-bound", nodeName(1), agentSA), tokenAudience, 3600)
	if err := c.openStream(secBrain, tok, nodeName(1)); err != nil {
		t.Fatalf("a token bound to a pod on %s, for its own stream: %v", nodeName(1), err)
	}
	before := c.refusals(secBrain, "node_mismatch")
	c.wantRefused(c.openStream(secBrain, tok, nodeName(2)), codes.PermissionDenied,
		`node:node-1 (token) may not open the stream of node "node-2"`, "node_mismatch", before)
}

// testTokenAudience: a token the API server issued for another audience, and a pod's ordinary
// API token (the brain's own, here), open nothing.
func (c *cluster) testTokenAudience(t *testing.T) {
	pod := c.createPod("sec-audience", nodeName(1), agentSA)
	for _, tok := range []string{c.boundToken(agentSA, pod, "not-ganglion", 3600), c.brainToken()} {
		before := c.refusals(secBrain, "bad_credentials")
		c.wantRefused(c.openStream(secBrain, tok, nodeName(1)), codes.Unauthenticated,
			"token not issued for this audience", "bad_credentials", before)
	}
}

// testTokenExpired: an expired token is refused. The API server issues none that expire within
// ten minutes, so the test takes a real agent token, moves its lifetime into the past and signs
// it again with the API server's own key. The same token given a current lifetime is accepted,
// so the expiry is the only thing wrong with it.
func (c *cluster) testTokenExpired(t *testing.T) {
	tok := c.boundToken(agentSA, c.createPod("sec-expired", nodeName(1), agentSA), tokenAudience, 3600)
	now := time.Now()
	if err := c.openStream(secBrain, c.resign(tok, validFor(now.Add(-time.Minute), now.Add(time.Hour))), nodeName(1)); err != nil {
		t.Fatalf("the token re-signed with a current lifetime: %v", err)
	}
	expired := c.resign(tok, validFor(now.Add(-3*time.Hour), now.Add(-2*time.Hour)))
	if st := c.review(expired); st.Authenticated || !strings.Contains(st.Error, "expired") {
		t.Fatalf("the API server on the expired token: authenticated=%v %q; want expired", st.Authenticated, st.Error)
	}
	before := c.refusals(secBrain, "bad_credentials")
	c.wantRefused(c.openStream(secBrain, expired, nodeName(1)), codes.Unauthenticated, "token has expired", "bad_credentials", before)
}

// testTokenRevoked: deleting the pod a token is bound to revokes it.
func (c *cluster) testTokenRevoked(t *testing.T) {
	pod := c.createPod("sec-revoked", nodeName(1), agentSA)
	tok := c.boundToken(agentSA, pod, tokenAudience, 3600)
	// Asked directly, not through the brain, whose cache would then keep the answer.
	if st := c.review(tok); !st.Authenticated || !slices.Equal(st.User.Extra["authentication.kubernetes.io/node-name"], []string{nodeName(1)}) {
		t.Fatalf("the token before its pod is deleted: %+v", st)
	}
	if err := c.api.client.CoreV1().Pods(deployNS).Delete(context.Background(), pod.Name,
		metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	// The API server caches its own answers for a few seconds.
	c.eventually("the API server stops vouching for the deleted pod's token", func() bool { return !c.review(tok).Authenticated })
	before := c.refusals(secBrain, "bad_credentials")
	c.wantRefused(c.openStream(secBrain, tok, nodeName(1)), codes.Unauthenticated, "token has been invalidated", "bad_credentials", before)
}

// testTokenOtherServiceAccount: a well-formed token bound to a pod on a node, for the right
// audience, but of another ServiceAccount, opens nothing.
func (c *cluster) testTokenOtherServiceAccount(t *testing.T) {
	const other = "sec-intruder"
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: deployNS, Name: other}}
	if _, err := c.api.client.CoreV1().ServiceAccounts(deployNS).Create(context.Background(), sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tok := c.boundToken(other, c.createPod("sec-intruder", nodeName(1), other), tokenAudience, 3600)
	before := c.refusals(secBrain, "bad_credentials")
	c.wantRefused(c.openStream(secBrain, tok, nodeName(1)), codes.Unauthenticated,
		"token of another identity than the agents' ServiceAccount", "bad_credentials", before)
}

// testTokenUnbound: an agent token bound to no pod names no node; no token at all opens nothing.
func (c *cluster) testTokenUnbound(t *testing.T) {
	before := c.refusals(secBrain, "bad_credentials")
	c.wantRefused(c.openStream(secBrain, c.boundToken(agentSA, nil, tokenAudience, 3600), nodeName(1)),
		codes.Unauthenticated, "token not bound to a pod on a node", "bad_credentials", before)
	before = c.refusals(secBrain, "unauthenticated")
	c.wantRefused(c.openStream(secBrain, "", nodeName(1)), codes.Unauthenticated, "authentication required", "unauthenticated", before)
}
