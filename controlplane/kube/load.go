package kube

import "github.com/ganglion-proxy/ganglion/controlplane/compute"

// Load feeds every object into e. Nodes go first so the first states are already zone-aware, and
// slices before services so each service is computed once, with its endpoints.
func (o *Objects) Load(e *compute.Engine) {
	for _, n := range o.Nodes {
		e.SetNode(n)
	}
	for _, s := range o.Slices {
		e.SetSlice(s)
	}
	for _, s := range o.Services {
		e.SetService(s)
	}
}
