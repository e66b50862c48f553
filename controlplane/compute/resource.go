package compute

import (
	"google.golang.org/protobuf/proto"

	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
)

// Resource is one named piece of desired state, encoded once and shared by every node that holds it.
type Resource struct {
	Name    string
	Version string
	// Msg is the resource with Name and Version set. It must not be modified.
	Msg *v1.Resource
	// Wire is Msg in protobuf encoding, ready to be sent to any number of agents.
	Wire []byte
}

// newResource seals content into a Resource: its version is the hash of the canonical encoding.
func newResource(name string, msg *v1.Resource) *Resource {
	msg.Name = name
	var c canon
	switch content := msg.Content.(type) {
	case *v1.Resource_Service:
		c.servicePort(content.Service)
	case *v1.Resource_Endpoints:
		c.endpointSet(content.Endpoints)
	case *v1.Resource_Probes:
		c.probeSet(content.Probes)
	case *v1.Resource_Dns:
		c.dnsRecords(content.Dns)
	case *v1.Resource_Announcement:
		c.announcement(content.Announcement)
	case *v1.Resource_Bgp:
		c.bgpConfig(content.Bgp)
	}
	msg.Version = c.version()
	wire, err := proto.Marshal(msg)
	if err != nil {
		// Marshal fails only on invalid UTF-8 or unset required fields, which compute never builds.
		panic("compute: marshal resource " + name + ": " + err.Error())
	}
	return &Resource{Name: name, Version: msg.Version, Msg: msg, Wire: wire}
}

// GetMsg returns the resource's message; nil-safe, for lookups that may find nothing.
func (r *Resource) GetMsg() *v1.Resource {
	if r == nil {
		return nil
	}
	return r.Msg
}
