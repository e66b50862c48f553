package kube

import (
	"bytes"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"
)

// Document is one Kubernetes object of a manifest, as written; exactly one field is set.
type Document struct {
	// Where names the document in errors: the source, its position, and its place in a List.
	Where   string
	Service *corev1.Service
	Slice   *discoveryv1.EndpointSlice
	Node    *corev1.Node
}

// DocumentError is a Kubernetes document that does not decode strictly: a typo must not pass.
type DocumentError struct {
	Where, Reason string
}

func (e *DocumentError) Error() string { return e.Where + ": " + e.Reason }

// ReadDocuments reads multi-document YAML or JSON: v1 Services and Nodes and discovery.k8s.io/v1
// EndpointSlices, alone or in Lists, with their namespace defaulted. Every other document is
// handed to other (bare metal's native documents); with a nil other it is an error.
func ReadDocuments(source string, data []byte, other func(where string, doc []byte) error) ([]Document, error) {
	var out []Document
	for i, doc := range SplitDocuments(data) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		if err := readDocument(fmt.Sprintf("%s#%d", source, i+1), doc, other, &out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func readDocument(where string, doc []byte, other func(string, []byte) error, out *[]Document) error {
	var meta struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Items      []json.RawMessage `json:"items"`
	}
	_ = yaml.Unmarshal(doc, &meta) // what does not parse is other's to report
	strict := func(v any) error {
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			return &DocumentError{Where: where, Reason: err.Error()}
		}
		return nil
	}
	d := Document{Where: where}
	var err error
	switch {
	case meta.APIVersion == "v1" && (meta.Kind == "List" || meta.Kind == "ServiceList" || meta.Kind == "NodeList"),
		meta.APIVersion == "discovery.k8s.io/v1" && meta.Kind == "EndpointSliceList":
		for j, item := range meta.Items {
			if err := readDocument(fmt.Sprintf("%s items[%d]", where, j), item, other, out); err != nil {
				return err
			}
		}
		return nil
	case meta.APIVersion == "v1" && meta.Kind == "Service":
		d.Service = &corev1.Service{}
		err = strict(d.Service)
		defaultNamespace(&d.Service.Namespace)
	case meta.APIVersion == "discovery.k8s.io/v1" && meta.Kind == "EndpointSlice":
		d.Slice = &discoveryv1.EndpointSlice{}
		err = strict(d.Slice)
		defaultNamespace(&d.Slice.Namespace)
	case meta.APIVersion == "v1" && meta.Kind == "Node":
		d.Node = &corev1.Node{}
		err = strict(d.Node)
	case other != nil:
		return other(where, doc)
	default:
		return fmt.Errorf("%s: kind: unsupported %q %q (want v1 Service, v1 Node or discovery.k8s.io/v1 EndpointSlice): %w", where, meta.APIVersion, meta.Kind, ErrInvalid)
	}
	if err != nil {
		return err
	}
	*out = append(*out, d)
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

// stripComments drops comment lines: a document of comments alone is no document.
func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.SplitAfter(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(line), []byte("#")) {
			out = append(out, line...)
		}
	}
	return out
}
