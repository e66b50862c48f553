package main

import (
	"flag"
	"fmt"
	"log/slog"

	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/ganglion-proxy/ganglion/controlplane/source/kubernetes"
)

func init() {
	var (
		kubeconfig string
		qps        float64
		burst      int
		serveFlags *flag.FlagSet
	)
	sources["kubernetes"] = sourceDef{
		flags: func(fs *flag.FlagSet) {
			serveFlags = fs
			fs.StringVar(&kubeconfig, "kubeconfig", "", "with --source=kubernetes: path to a kubeconfig; empty: in-cluster (the pod's service account)")
			fs.Float64Var(&qps, "kube-api-qps", 20, "with --source=kubernetes: client-side rate limit of API requests (watches are long-lived, so lists on start are what it bounds)")
			fs.IntVar(&burst, "kube-api-burst", 40, "with --source=kubernetes: burst above --kube-api-qps")
		},
		build: func(log *slog.Logger) (source, error) {
			// client-go logs through klog; one log stream, in the brain's format, is easier to
			// collect and filter than two.
			klog.SetSlogLogger(log.With("component", "client-go"))
			cfg, err := restConfig(kubeconfig)
			if err != nil {
				return nil, err
			}
			cfg.QPS, cfg.Burst = float32(qps), burst
			cfg.UserAgent = "ganglion-controlplane"
			client, err := clientset.NewForConfig(cfg)
			if err != nil {
				return nil, fmt.Errorf("kubernetes client: %w", err)
			}
			// --proxy-name belongs to serve (compute needs it too); the source reads the same
			// value so that its server-side filter and compute's agree.
			var proxyName string
			if f := serveFlags.Lookup("proxy-name"); f != nil {
				proxyName = f.Value.String()
			}
			return &kubernetes.Source{Client: client, ProxyName: proxyName, Log: log.With("source", "kubernetes")}, nil
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
