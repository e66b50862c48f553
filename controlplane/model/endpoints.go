package model

import (
	"net/netip"
	"time"
)

// Family is an IP address family.
type Family uint8

// The two address families.
const (
	IPv4 Family = 4
	IPv6 Family = 6
)

// FamilyOf returns the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is4() || a.Is4In6() {
		return IPv4
	}
	return IPv6
}

// String renders the family as v4 or v6.
func (f Family) String() string {
	if f == IPv6 {
		return "v6"
	}
	return "v4"
}

// EndpointSlice is a group of endpoints of one service in one family, with the ports they serve.
type EndpointSlice struct {
	Namespace string
	Name      string
	// Service is the name of the service, in the same namespace, that the slice backs.
	Service   string
	Family    Family
	Ports     []EndpointPort
	Endpoints []Endpoint
	// TriggerTime is when the change that produced this slice happened, if the source knows; it
	// starts the clock of the end-to-end programming latency.
	TriggerTime time.Time
}

// ServiceKey returns the key of the service the slice backs.
func (s *EndpointSlice) ServiceKey() ServiceKey { return ServiceKey{s.Namespace, s.Service} }

// SliceKey names an endpoint slice.
type SliceKey struct {
	Namespace string
	Name      string
}

// Key returns the slice's key.
func (s *EndpointSlice) Key() SliceKey { return SliceKey{s.Namespace, s.Name} }

// EndpointPort is the target port of the service port with the same name.
type EndpointPort struct {
	Name     string
	Protocol Protocol
	Port     uint16
}

// Endpoint is one backend address. Conditions follow Kubernetes' defaults already applied by the
// adapter: a missing ready or serving means true, a missing terminating means false.
type Endpoint struct {
	Address     netip.Addr
	Ready       bool
	Serving     bool
	Terminating bool
	NodeName    string
	Zone        string
	// Hostname names the endpoint under its headless service in DNS; empty when it has none.
	Hostname string
	// ForZones and ForNodes are the topology hints.
	ForZones []string
	ForNodes []string
	// Weight is the relative share of new connections; 0 means 1.
	Weight uint32
	// NotReadyReason says why a not-ready endpoint is not ready when its source knows (bare
	// metal: a disabled backend, or the health check that fails and its last result). Explain
	// shows it; nothing else reads it.
	NotReadyReason string
}
