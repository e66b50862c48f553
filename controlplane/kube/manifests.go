package kube

import (
	"fmt"

	"github.com/ganglion-proxy/ganglion/controlplane/model"
)

// Objects is a set of model objects read from manifests.
type Objects struct {
	Services []*model.Service
	Slices   []*model.EndpointSlice
	Nodes    []*model.Node
}

// DecodeManifests reads multi-document YAML (or JSON) holding v1 Services and Nodes and
// discovery.k8s.io/v1 EndpointSlices; a List of them works too. source names the input in errors.
func DecodeManifests(source string, data []byte) (*Objects, error) {
	docs, err := ReadDocuments(source, data, nil)
	if err != nil {
		return nil, err
	}
	out := &Objects{}
	for _, d := range docs {
		switch {
		case d.Service != nil:
			ms, err := Service(d.Service)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.Where, err)
			}
			out.Services = append(out.Services, ms)
		case d.Slice != nil:
			ms, err := EndpointSlice(d.Slice)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", d.Where, err)
			}
			if ms != nil {
				out.Slices = append(out.Slices, ms)
			}
		default:
			out.Nodes = append(out.Nodes, Node(d.Node))
		}
	}
	return out, nil
}
