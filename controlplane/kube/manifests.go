package kube

import (
	"bytes"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"

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
	out := &Objects{}
	for i, doc := range SplitDocuments(data) {
		if err := out.add(fmt.Sprintf("%s#%d", source, i+1), doc); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (o *Objects) add(where string, doc []byte) error {
	var meta struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	switch {
	case meta.Kind == "" && len(bytes.TrimSpace(doc)) == 0:
		return nil
	case meta.Kind == "List" || meta.Kind == "ServiceList" || meta.Kind == "NodeList" || meta.Kind == "EndpointSliceList":
		for j, item := range meta.Items {
			if err := o.add(fmt.Sprintf("%s items[%d]", where, j), item); err != nil {
				return err
			}
		}
		return nil
	case meta.APIVersion == "v1" && meta.Kind == "Service":
		var s corev1.Service
		if err := yaml.UnmarshalStrict(doc, &s); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		defaultNamespace(&s.Namespace)
		ms, err := Service(&s)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		o.Services = append(o.Services, ms)
	case meta.APIVersion == "discovery.k8s.io/v1" && meta.Kind == "EndpointSlice":
		var s discoveryv1.EndpointSlice
		if err := yaml.UnmarshalStrict(doc, &s); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		defaultNamespace(&s.Namespace)
		ms, err := EndpointSlice(&s)
		if err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		if ms != nil {
			o.Slices = append(o.Slices, ms)
		}
	case meta.APIVersion == "v1" && meta.Kind == "Node":
		var n corev1.Node
		if err := yaml.UnmarshalStrict(doc, &n); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
		o.Nodes = append(o.Nodes, Node(&n))
	default:
		return fmt.Errorf("%s: kind: unsupported %q %q (want v1 Service, v1 Node or discovery.k8s.io/v1 EndpointSlice): %w", where, meta.APIVersion, meta.Kind, ErrInvalid)
	}
	return nil
}

func defaultNamespace(ns *string) {
	if *ns == "" {
		*ns = "default"
	}
}

// SplitDocuments splits multi-document YAML on its separator lines.
func SplitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur []byte
	for _, line := range bytes.SplitAfter(data, []byte("\n")) {
		if t := bytes.TrimRight(line, " \t\r\n"); bytes.Equal(t, []byte("---")) {
			docs = append(docs, cur)
			cur = nil
			continue
		}
		cur = append(cur, line...)
	}
	return append(docs, cur)
}
