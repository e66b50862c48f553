package main

import (
	"flag"
	"fmt"
	"log/slog"

	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/ganglion-proxy/ganglion/controlplane/auth"
	"github.com/ganglion-proxy/ganglion/controlplane/source/kubernetes"
)

// Token reviews get a client of their own with a higher rate limit than the informers': a
// reconnect storm of 1,000 agents is 1,000 reviews (one per token, then cached), which at the
// informers' 20 per second would keep agents waiting for most of a minute, and would starve the
// informers' relists of the same limiter. A review is cheap for the API server (a signature check
// and a lookup of the bound pod), and its priority and fairness still applies.
const (
	tokenReviewQPS   = 200
	tokenReviewBurst = 400
)

// kubeSource is the Kubernetes source with the authenticator of the agents' tokens, which asks
// the same API server.
type kubeSource struct {
	*kubernetes.Source
	tokens auth.TokenAuthenticator
}

// Tokens makes serve accept the agents' projected ServiceAccount tokens.
func (s *kubeSource) Tokens() auth.TokenAuthenticator { return s.tokens }

func init() {
	var (
		kubeconfig string
		qps        float64
		burst      int
		serveFlags *flag.FlagSet
		review     auth.TokenReviewOptions
	)
	sources["kubernetes"] = sourceDef{
		flags: func(fs *flag.FlagSet) {
			serveFlags = fs
			fs.StringVar(&kubeconfig, "kubeconfig", "", "with --source=kubernetes: path to a kubeconfig; empty: in-cluster (the pod's service account)")
			fs.Float64Var(&qps, "kube-api-qps", 20, "with --source=kubernetes: client-side rate limit of API requests (watches are long-lived, so lists on start are what it bounds)")
			fs.IntVar(&burst, "kube-api-burst", 40, "with --source=kubernetes: burst above --kube-api-qps")
			fs.StringVar(&review.Audience, "token-audience", "ganglion", "with --source=kubernetes: the audience agents' tokens must be issued for (the projected token volume's audience)")
			fs.StringVar(&review.ServiceAccount, "agent-service-account", "ganglion-system/ganglion-agent", "with --source=kubernetes: namespace/name of the agents' ServiceAccount; tokens of any other identity are refused")
		},
		build: func(log *slog.Logger) (source, error) {
			// client-go logs through klog; one log stream, in the brain's format, is easier to
			// collect and filter than two.
			klog.SetSlogLogger(log.With("component", "client-go"))
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return nil, err
			}
			cfg.UserAgent = "ganglion-controlplane"
			reviewCfg := rest.CopyConfig(cfg)
			reviewCfg.QPS, reviewCfg.Burst = tokenReviewQPS, tokenReviewBurst
			cfg.QPS, cfg.Burst = float32(qps), burst
			client, err := clientset.NewForConfig(cfg)
			if err != nil {
				return nil, fmt.Errorf("kubernetes client: %w", err)
			}
			reviewClient, err := clientset.NewForConfig(reviewCfg)
			if err != nil {
				return nil, fmt.Errorf("kubernetes client for token reviews: %w", err)
			}
			tokens, err := auth.NewTokenReviewer(reviewClient.AuthenticationV1().TokenReviews(), review)
			if err != nil {
				return nil, fmt.Errorf("--agent-service-account: %w", err)
			}
			// --proxy-name belongs to serve (compute needs it too); the source reads the same
			// value so that its server-side filter and compute's agree.
			var proxyName string
			if f := serveFlags.Lookup("proxy-name"); f != nil {
				proxyName = f.Value.String()
			}
			src := &kubernetes.Source{Client: client, ProxyName: proxyName, Log: log.With("source", "kubernetes")}
			return &kubeSource{Source: src, tokens: tokens}, nil
		},
	}
}

// restConfig loads --kubeconfig, or the in-cluster configuration when it is empty.
func restConfig(path string) (*rest.Config, error) {
	if path == "" {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster config (set --kubeconfig outside a cluster): %w", err)
		}
		return cfg, nil
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", path)
	if err != nil {
		return nil, fmt.Errorf("--kubeconfig: %w", err)
	}
	return cfg, nil
}
