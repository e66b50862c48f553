package kube

import (
	"context"
	"path"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// checkSecuredManifests reads back what deploy/ applied and checks that it runs the way this
// test runs the processes: agents with a projected token for tokenAudience and the brain's CA,
// brains with the serving Secret and probes the kubelet can make without TLS.
func (c *cluster) checkSecuredManifests(t *testing.T) {
	ctx := context.Background()
	ds, err := c.api.client.AppsV1().DaemonSets(deployNS).Get(ctx, "ganglion-agent", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	agent := ds.Spec.Template.Spec
	var token *corev1.ServiceAccountTokenProjection
	var tokenVolume string
	for _, v := range agent.Volumes {
		if v.Projected == nil {
			continue
		}
		for _, src := range v.Projected.Sources {
			if src.ServiceAccountToken != nil {
				token, tokenVolume = src.ServiceAccountToken, v.Name
			}
		}
	}
	if token == nil || token.Audience != tokenAudience {
		t.Fatalf("agent DaemonSet: projected token %+v, want audience %q", token, tokenAudience)
	}
	tokenFile := path.Join(mountPath(agent.Containers[0], tokenVolume), token.Path)
	for _, arg := range []string{"--token-file=" + tokenFile, "--brain-server-name=ganglion-controlplane.$(POD_NAMESPACE).svc"} {
		if !slices.Contains(agent.Containers[0].Args, arg) {
			t.Errorf("agent DaemonSet: no %s in %q", arg, agent.Containers[0].Args)
		}
	}
	if !hasArgPrefix(agent.Containers[0].Args, "--tls-ca=") {
		t.Errorf("agent DaemonSet: no --tls-ca in %q", agent.Containers[0].Args)
	}

	dep, err := c.api.client.AppsV1().Deployments(deployNS).Get(ctx, "ganglion-controlplane", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	brain := dep.Spec.Template.Spec
	secretMounted := slices.ContainsFunc(brain.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == "ganglion-controlplane-tls"
	})
	if !secretMounted {
		t.Error("controlplane Deployment: Secret ganglion-controlplane-tls not mounted")
	}
	for _, flag := range []string{"--tls-cert=", "--tls-key=", "--client-ca=", "--health-listen="} {
		if !hasArgPrefix(brain.Containers[0].Args, flag) {
			t.Errorf("controlplane Deployment: no %s in %q", flag, brain.Containers[0].Args)
		}
	}
	ct := brain.Containers[0]
	for name, p := range map[string]*corev1.Probe{"readiness": ct.ReadinessProbe, "startup": ct.StartupProbe, "liveness": ct.LivenessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Port.String() != "health" {
			t.Errorf("controlplane Deployment: %s probe %+v, want HTTP on the health port", name, p)
		}
	}
}

// mountPath is where container mounts volume.
func mountPath(ct corev1.Container, volume string) string {
	for _, m := range ct.VolumeMounts {
		if m.Name == volume {
			return m.MountPath
		}
	}
	return ""
}

func hasArgPrefix(args []string, prefix string) bool {
	return slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, prefix) })
}
