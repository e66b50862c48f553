// Package native holds the types of Ganglion's own documents (apiVersion ganglion-proxy.io/v1):
// a compact Service with its backends and health check, and a Node. Bare metal stores them;
// package kube expresses Kubernetes objects in them for bare metal's validation and allocation,
// so that Kubernetes objects are read in one place only.
package native

// APIVersion is the apiVersion of the native documents.
const APIVersion = "ganglion-proxy.io/v1"

// Kinds of stored objects.
const (
	KindService       = "Service"
	KindEndpointSlice = "EndpointSlice"
	KindNode          = "Node"
)

// Metadata names an object.
type Metadata struct {
	Name      string            `json:"name"`
	Namespace string            `json:"namespace,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
}

// Service is the native service document: a service with its VIPs, ports, policies, health check
// and, optionally, its backends. Kubernetes v1 Services are stored in this form too.
type Service struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   Metadata    `json:"metadata"`
	Spec       ServiceSpec `json:"spec"`
}

// ServiceSpec is what a service asks for.
type ServiceSpec struct {
	// Type is ClusterIP (the default), NodePort, LoadBalancer or ExternalName.
	Type string `json:"type,omitempty"`
	// Headless gives a ClusterIP service no VIP (Kubernetes' clusterIP None): it is not proxied,
	// and a node-local DNS answers its name with its ready backends' addresses.
	Headless bool `json:"headless,omitempty"`
	// ExternalName is the DNS name an ExternalName service aliases: it is not proxied, and a
	// node-local DNS answers its name with a CNAME. Such a service has no VIP and no backends.
	ExternalName string `json:"externalName,omitempty"`
	// PublishNotReadyAddresses has DNS name a headless service's disabled or failing backends too.
	PublishNotReadyAddresses bool `json:"publishNotReadyAddresses,omitempty"`
	// VIPs are the service's virtual addresses, at most one per family; one IPv4 address is
	// allocated from the service range when none is given.
	VIPs                     []string         `json:"vips,omitempty"`
	ExternalIPs              []string         `json:"externalIPs,omitempty"`
	LoadBalancerIPs          []string         `json:"loadBalancerIPs,omitempty"`
	LoadBalancerSourceRanges []string         `json:"loadBalancerSourceRanges,omitempty"`
	Ports                    []Port           `json:"ports"`
	Scheduler                string           `json:"scheduler,omitempty"`
	SessionAffinity          *SessionAffinity `json:"sessionAffinity,omitempty"`
	ExternalTrafficPolicy    string           `json:"externalTrafficPolicy,omitempty"`
	InternalTrafficPolicy    string           `json:"internalTrafficPolicy,omitempty"`
	HealthCheckNodePort      int32            `json:"healthCheckNodePort,omitempty"`
	// AllocateLoadBalancerNodePorts false gives a LoadBalancer service no node ports unless a
	// port names one (Kubernetes' field of the same name): no node opens a NodePort for it.
	AllocateLoadBalancerNodePorts *bool        `json:"allocateLoadBalancerNodePorts,omitempty"`
	HealthCheck                   *HealthCheck `json:"healthCheck,omitempty"`
	// Backends, when present, are the service's endpoints; services applied as Kubernetes
	// manifests take theirs from EndpointSlices instead.
	Backends []Backend `json:"backends,omitempty"`
}

// Port is one port of a service.
type Port struct {
	Name     string `json:"name,omitempty"`
	Protocol string `json:"protocol,omitempty"`
	Port     int32  `json:"port"`
	// TargetPort is the backends' port (default: Port).
	TargetPort int32 `json:"targetPort,omitempty"`
	// NodePort is allocated for NodePort and LoadBalancer services when not given.
	NodePort int32 `json:"nodePort,omitempty"`
}

// SessionAffinity sends a client to the same backend for TimeoutSeconds (default 10800).
type SessionAffinity struct {
	TimeoutSeconds int32 `json:"timeoutSeconds,omitempty"`
}

// Backend is one endpoint of a native service.
type Backend struct {
	Address string `json:"address"`
	// Port overrides the target port; only for single-port services.
	Port   int32  `json:"port,omitempty"`
	Node   string `json:"node,omitempty"`
	Zone   string `json:"zone,omitempty"`
	Weight int32  `json:"weight,omitempty"`
	// Hostname names the backend under its headless service in DNS
	// (<hostname>.<service>.<namespace>.svc.<domain>); other services ignore it.
	Hostname string `json:"hostname,omitempty"`
	// Disabled takes the backend out of rotation without deleting it (drain).
	Disabled bool `json:"disabled,omitempty"`
}

// HealthCheck is how agents probe the backends on their node, with the fields of a Kubernetes
// readiness probe.
type HealthCheck struct {
	HTTPGet             *HTTPGetAction   `json:"httpGet,omitempty"`
	TCPSocket           *TCPSocketAction `json:"tcpSocket,omitempty"`
	Exec                *ExecAction      `json:"exec,omitempty"`
	InitialDelaySeconds int32            `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       int32            `json:"periodSeconds,omitempty"`
	TimeoutSeconds      int32            `json:"timeoutSeconds,omitempty"`
	SuccessThreshold    int32            `json:"successThreshold,omitempty"`
	FailureThreshold    int32            `json:"failureThreshold,omitempty"`
}

// HTTPGetAction probes with an HTTP GET; 200-399 passes.
type HTTPGetAction struct {
	Path   string `json:"path,omitempty"`
	Port   int32  `json:"port,omitempty"`
	Scheme string `json:"scheme,omitempty"`
}

// TCPSocketAction probes by opening a TCP connection.
type TCPSocketAction struct {
	Port int32 `json:"port,omitempty"`
}

// ExecAction probes by running a command on the node; exit 0 passes.
type ExecAction struct {
	Command []string `json:"command"`
}

// Node is the native node document.
type Node struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Metadata   Metadata `json:"metadata"`
	Spec       NodeSpec `json:"spec"`
}

// NodeSpec describes a node.
type NodeSpec struct {
	Addresses []string `json:"addresses,omitempty"`
	Zone      string   `json:"zone,omitempty"`
}

// Proxied reports whether the dataplane serves the service: headless and ExternalName services
// are named (a node-local DNS answers for them) but not proxied.
func (sp *ServiceSpec) Proxied() bool { return !sp.Headless && sp.Type != "ExternalName" }

// NeedsNodePorts reports whether ports without a node port get one: NodePort services, and
// LoadBalancer services unless allocateLoadBalancerNodePorts is false.
func (sp *ServiceSpec) NeedsNodePorts() bool {
	alloc := sp.AllocateLoadBalancerNodePorts == nil || *sp.AllocateLoadBalancerNodePorts
	return sp.Type == "NodePort" || (sp.Type == "LoadBalancer" && alloc)
}
