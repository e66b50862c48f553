package kube

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// createPod creates a pod of ServiceAccount sa already scheduled on node, as the scheduler
// would leave a DaemonSet's pod. No kubelet runs it: it exists so that a token can be bound to it,
// which is what puts the node's name in the token.
func (c *cluster) createPod(name, node, sa string) *corev1.Pod {
	c.t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: deployNS, Name: name},
		Spec: corev1.PodSpec{
			NodeName: node, ServiceAccountName: sa, AutomountServiceAccountToken: ptr.To(false),
			Containers: []corev1.Container{{Name: "agent", Image: "ganglion"}},
		},
	}
	pod, err := c.api.client.CoreV1().Pods(deployNS).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("create pod %s on %s: %v", name, node, err)
	}
	return pod
}

// boundToken requests a token of ServiceAccount sa for audience, bound to pod when it is not
// nil: what the kubelet writes into a projected serviceAccountToken volume.
func (c *cluster) boundToken(sa string, pod *corev1.Pod, audience string, seconds int64) string {
	c.t.Helper()
	spec := authnv1.TokenRequestSpec{Audiences: []string{audience}, ExpirationSeconds: ptr.To(seconds)}
	if pod != nil {
		spec.BoundObjectRef = &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: pod.Name, UID: pod.UID}
	}
	tr, err := c.api.client.CoreV1().ServiceAccounts(deployNS).CreateToken(context.Background(), sa,
		&authnv1.TokenRequest{Spec: spec}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("token of %s/%s for %q: %v", deployNS, sa, audience, err)
	}
	return tr.Status.Token
}

// writeToken writes token to a file of the whole test, for --token-file.
func (c *cluster) writeToken(token string) string {
	c.t.Helper()
	f, err := os.CreateTemp(c.top.TempDir(), "token-*")
	if err == nil {
		_, err = f.WriteString(token)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		c.t.Fatal(err)
	}
	return f.Name()
}

// review asks the API server directly, as an admin, what it makes of token for the agents'
// audience: how the tests know a token's state without going through a brain's cache.
func (c *cluster) review(token string) authnv1.TokenReviewStatus {
	c.t.Helper()
	tr, err := c.api.client.AuthenticationV1().TokenReviews().Create(context.Background(), &authnv1.TokenReview{
		Spec: authnv1.TokenReviewSpec{Token: token, Audiences: []string{tokenAudience}},
	}, metav1.CreateOptions{})
	if err != nil {
		c.t.Fatalf("token review: %v", err)
	}
	return tr.Status
}

// resign returns token with its claims changed by edit and signed again with the API server's
// own ServiceAccount signing key: a token the API server itself could have issued, identical but
// for what edit changed. The API server refuses to issue tokens that expire within ten minutes,
// so this is how a test gets a genuinely expired one.
func (c *cluster) resign(token string, edit func(claims map[string]any)) string {
	c.t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		c.t.Fatalf("not a JWT: %d parts", len(parts))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		c.t.Fatal(err)
	}
	claims := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber() // keep exp, iat and nbf integers, as the API server wrote them
	if err := dec.Decode(&claims); err != nil {
		c.t.Fatal(err)
	}
	edit(claims)
	if payload, err = json.Marshal(claims); err != nil {
		c.t.Fatal(err)
	}
	signed := parts[0] + "." + base64.RawURLEncoding.EncodeToString(payload)
	digest := sha256.Sum256([]byte(signed))
	sig, err := rsa.SignPKCS1v15(rand.Reader, c.signingKey(), crypto.SHA256, digest[:])
	if err != nil {
		c.t.Fatal(err)
	}
	return signed + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// validFor sets a token's lifetime claims: issued at from, expiring at to.
func validFor(from, to time.Time) func(map[string]any) {
	return func(claims map[string]any) {
		claims["iat"], claims["nbf"], claims["exp"] = from.Unix(), from.Unix(), to.Unix()
	}
}

// signingKey reads the key the API server signs ServiceAccount tokens with.
func (c *cluster) signingKey() *rsa.PrivateKey {
	c.t.Helper()
	b, err := os.ReadFile(filepath.Join(c.api.dir, "sa.key"))
	if err != nil {
		c.t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		c.t.Fatal("sa.key: no PEM block")
	}
	key, err := x509.ParsePKCS1PrivateKey(blk.Bytes)
	if err != nil {
		c.t.Fatal(err)
	}
	return key
}
