// Package kube is the end-to-end test of Kubernetes mode: a real kube-apiserver backed by
// Debian's etcd, Nodes, Services and EndpointSlices created through the API with client-go, two
// brain replicas with --source=kubernetes, nftables agents in network-namespace nodes, and real
// traffic. Run e2e/kube/prepare.sh first (make e2e-kube does): it installs etcd and builds the
// pinned kube-apiserver and kubectl into a cache.
package kube
