// Package example holds the built-in example cluster that `make demo` computes.
package example

import _ "embed"

// ClusterYAML is the example cluster as Kubernetes manifests.
//
//go:embed cluster.yaml
var ClusterYAML []byte
