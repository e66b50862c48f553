// Package kube is the end-to-end test of Kubernetes mode: a real kube-apiserver backed by
// Debian's etcd, Nodes, Services and EndpointSlices created through the API with client-go, two
// brain replicas with --source=kubernetes serving TLS, nftables agents in network-namespace nodes
// that authenticate with ServiceAccount tokens bound to pods on their nodes (as the DaemonSet's
// projected tokens are), and real traffic. It also checks what the brains refuse: a token used for
// another node, for another audience, expired, revoked or of another ServiceAccount. Run
// e2e/kube/prepare.sh first (make e2e-kube does): it installs etcd and builds the pinned
// kube-apiserver and kubectl into a cache.
package kube
