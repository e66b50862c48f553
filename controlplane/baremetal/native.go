package baremetal

import nativefmt "github.com/ganglion-proxy/ganglion/controlplane/native"

// The native documents' types live in package native, where package kube can express Kubernetes
// objects in them: bare metal validates, allocates and stores both forms without reading
// Kubernetes objects itself.
type (
	Metadata        = nativefmt.Metadata
	Service         = nativefmt.Service
	ServiceSpec     = nativefmt.ServiceSpec
	Port            = nativefmt.Port
	SessionAffinity = nativefmt.SessionAffinity
	Backend         = nativefmt.Backend
	HealthCheck     = nativefmt.HealthCheck
	HTTPGetAction   = nativefmt.HTTPGetAction
	TCPSocketAction = nativefmt.TCPSocketAction
	ExecAction      = nativefmt.ExecAction
	Node            = nativefmt.Node
	NodeSpec        = nativefmt.NodeSpec
)

// APIVersion and the kinds of stored objects.
const (
	APIVersion        = nativefmt.APIVersion
	KindService       = nativefmt.KindService
	KindEndpointSlice = nativefmt.KindEndpointSlice
	KindNode          = nativefmt.KindNode
)
