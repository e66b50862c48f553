package model

import "net/netip"

// ServiceKey names a service.
type ServiceKey struct {
	Namespace string
	Name      string
}

// String renders the key as namespace/name.
func (k ServiceKey) String() string { return k.Namespace + "/" + k.Name }

// ServiceType mirrors Kubernetes' service types.
type ServiceType string

// The service types compute distinguishes.
const (
	TypeClusterIP    ServiceType = "ClusterIP"
	TypeNodePort     ServiceType = "NodePort"
	TypeLoadBalancer ServiceType = "LoadBalancer"
	TypeExternalName ServiceType = "ExternalName"
)

// Protocol is a transport protocol.
type Protocol string

// The transport protocols a service port may use.
const (
	TCP  Protocol = "TCP"
	UDP  Protocol = "UDP"
	SCTP Protocol = "SCTP"
)

// IPMode says how a load balancer delivers traffic for its ingress IP.
type IPMode string

// The load-balancer ingress modes; empty means VIP.
const (
	IPModeVIP   IPMode = "VIP"
	IPModeProxy IPMode = "Proxy"
)

// DefaultAffinityTimeoutSeconds is Kubernetes' default ClientIP affinity timeout (3 hours).
const DefaultAffinityTimeoutSeconds = 10800

// Service is the user-set part of a service.
type Service struct {
	Namespace string
	Name      string
	Type      ServiceType
	// Headless is true for clusterIP None: not proxied, but named (DNS answers with its endpoints).
	Headless bool
	// ExternalName is the name an ExternalName service aliases (DNS answers with a CNAME to it).
	ExternalName string
	// PublishNotReadyAddresses has DNS name a headless service's not-ready endpoints too.
	PublishNotReadyAddresses bool
	// ClusterIPs holds at most one address per family.
	ClusterIPs  []netip.Addr
	ExternalIPs []netip.Addr
	// LoadBalancerIngress is the load balancer's status; only LoadBalancer services have one.
	LoadBalancerIngress      []LoadBalancerIngress
	LoadBalancerSourceRanges []netip.Prefix
	// LoadBalancerClass is spec.loadBalancerClass: which implementation assigns and announces the
	// load balancer's addresses ("" for the cluster's default).
	LoadBalancerClass    string
	Ports                []ServicePort
	ExternalTrafficLocal bool
	InternalTrafficLocal bool
	// AffinityTimeoutSeconds is non-zero exactly when sessionAffinity is ClientIP.
	AffinityTimeoutSeconds uint32
	HealthCheckNodePort    uint16
	// Scheduler is the IPVS scheduler the service asks for; empty means the agent's default.
	Scheduler string
	// HealthCheck, when set, has agents probe the endpoints on their node.
	HealthCheck *HealthCheck
	Labels      map[string]string
}

// Key returns the service's key.
func (s *Service) Key() ServiceKey { return ServiceKey{s.Namespace, s.Name} }

// LoadBalancerIngress is one ingress point of a load balancer.
type LoadBalancerIngress struct {
	IP     netip.Addr
	IPMode IPMode
}

// ServicePort is one port of a service. Port names are unique within a service.
type ServicePort struct {
	Name     string
	Protocol Protocol
	Port     uint16
	NodePort uint16
}

// ProbeAction is how a health check probes.
type ProbeAction string

// The probe actions of a Kubernetes readiness probe.
const (
	ProbeHTTPGet   ProbeAction = "httpGet"
	ProbeTCPSocket ProbeAction = "tcpSocket"
	ProbeExec      ProbeAction = "exec"
)

// HealthCheck is how the agents probe a service's endpoints on their nodes (bare-metal mode;
// in Kubernetes the kubelet does it). Zero numbers take Kubernetes' probe defaults.
type HealthCheck struct {
	Action  ProbeAction
	Path    string // httpGet
	Scheme  string // httpGet: HTTP or HTTPS
	Port    uint16 // httpGet, tcpSocket: 0 means the endpoint's port
	Command []string

	InitialDelaySeconds, PeriodSeconds, TimeoutSeconds, SuccessThreshold, FailureThreshold uint32
}
