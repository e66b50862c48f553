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
func newResource(name string, svc *v1.ServicePort, eps *v1.EndpointSet) *Resource {
	msg := &v1.Resource{Name: name}
	var c canon
	if svc != nil {
		c.servicePort(svc)
		msg.Content = &v1.Resource_Service{Service: svc}
	} else {
		c.endpointSet(eps)
		msg.Content = &v1.Resource_Endpoints{Endpoints: eps}
	}
	msg.Version = c.version()
	wire, err := proto.Marshal(msg)
	if err != nil {
		// Marshal fails only on invalid UTF-8 or unset required fields, which compute never builds.
		panic("compute: marshal resource " + name + ": " + err.Error())
	}
	return &Resource{Name: name, Version: msg.Version, Msg: msg, Wire: wire}
}
