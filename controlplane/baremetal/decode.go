package baremetal

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"sigs.k8s.io/yaml"

	"github.com/ganglion-proxy/ganglion/controlplane/kube"
	"github.com/ganglion-proxy/ganglion/store"
)

// ErrInvalid marks a document that cannot be stored; the message names the document, the field
// and the reason.
var ErrInvalid = errors.New("invalid")

// FieldError is a rejected field of one document.
type FieldError struct {
	Source string // where the document came from: file#index
	Object string // kind namespace/name, when known
	Field  string
	Reason string
}

func (e *FieldError) Error() string {
	where := e.Source
	if e.Object != "" {
		where += " (" + e.Object + ")"
	}
	return fmt.Sprintf("%s: %s: %s", where, e.Field, e.Reason)
}

// Unwrap makes every FieldError an ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Object is one decoded document: exactly one of Service, Slice and Node is set. A Kubernetes
// Service or Node keeps its own form in KubeService or KubeNode, which is what is stored and
// read back; Service and Node then are its native view (package kube's), which validation,
// allocation and address claims work on.
type Object struct {
	Source      string
	Key         store.Key
	Service     *Service
	Slice       *discoveryv1.EndpointSlice
	Node        *Node
	KubeService *corev1.Service
	KubeNode    *corev1.Node
}

func (o *Object) String() string {
	if o.Key.Namespace == "" {
		return o.Key.Kind + " " + o.Key.Name
	}
	return o.Key.Kind + " " + o.Key.Namespace + "/" + o.Key.Name
}

func (o *Object) fail(field, format string, args ...any) error {
	if o.KubeService != nil {
		field = o.kubeField(field)
	}
	return &FieldError{Source: o.Source, Object: o.String(), Field: field, Reason: fmt.Sprintf(format, args...)}
}

// kubeFields name, for a Kubernetes Service, the fields its native view checks under other names:
// a refusal names the field the user wrote.
var kubeFields = []struct{ native, kube string }{
	{"spec.vips", "spec.clusterIPs"},
	{"spec.sessionAffinity.timeoutSeconds", "spec.sessionAffinityConfig.clientIP.timeoutSeconds"},
	{"spec.scheduler", "metadata.annotations[ganglion-proxy.io/scheduler]"},
	{"spec.headless", "spec.clusterIP"},
}

func (o *Object) kubeField(field string) string {
	// The native view's load-balancer addresses are spec.loadBalancerIP and the VIP-mode ingress.
	var i int
	if _, err := fmt.Sscanf(field, "spec.loadBalancerIPs[%d]", &i); err == nil && i < len(o.Service.Spec.LoadBalancerIPs) {
		ip := o.Service.Spec.LoadBalancerIPs[i]
		if o.KubeService.Spec.LoadBalancerIP == ip { //nolint:staticcheck // the deprecated field users still set
			return "spec.loadBalancerIP"
		}
		for j, ing := range o.KubeService.Status.LoadBalancer.Ingress {
			if ing.IP == ip {
				return fmt.Sprintf("status.loadBalancer.ingress[%d].ip", j)
			}
		}
	}
	for _, f := range kubeFields {
		if rest, ok := strings.CutPrefix(field, f.native); ok {
			return f.kube + rest
		}
	}
	return field
}

// Decode reads multi-document YAML or JSON. Each document is a native Service or Node
// (apiVersion ganglion-proxy.io/v1), or a Kubernetes v1 Service, v1 Node or
// discovery.k8s.io/v1 EndpointSlice as it is, alone or in a List. Unknown fields are errors: a
// typo must not pass.
func Decode(source string, data []byte) ([]*Object, error) {
	var out []*Object
	docs, err := kube.ReadDocuments(source, data, func(where string, doc []byte) error {
		o, err := decodeNative(where, doc)
		if err == nil {
			out = append(out, o)
		}
		return err
	})
	var de *kube.DocumentError
	if errors.As(err, &de) {
		return nil, &FieldError{Source: de.Where, Field: "document", Reason: de.Reason}
	}
	if err != nil {
		return nil, err
	}
	for _, d := range docs {
		o := &Object{Source: d.Where, Slice: d.Slice, KubeService: d.Service, KubeNode: d.Node}
		if d.Slice != nil {
			o.Slice.APIVersion, o.Slice.Kind = "discovery.k8s.io/v1", "EndpointSlice"
		}
		o.view()
		out = append(out, o)
	}
	return out, nil
}

// view derives the native view of a Kubernetes Service or Node, and the key.
func (o *Object) view() {
	switch {
	case o.KubeService != nil:
		o.KubeService.APIVersion, o.KubeService.Kind = "v1", "Service"
		o.Service = kube.NativeService(o.KubeService)
	case o.KubeNode != nil:
		o.KubeNode.APIVersion, o.KubeNode.Kind = "v1", "Node"
		o.Node = kube.NativeNode(o.KubeNode)
	}
	o.setKey()
}

// decodeNative reads a document that is not a Kubernetes object: a native one, or an error.
func decodeNative(where string, doc []byte) (*Object, error) {
	var tm struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, &FieldError{Source: where, Field: "document", Reason: "not YAML or JSON: " + err.Error()}
	}
	strict := func(v any) error {
		if err := yaml.UnmarshalStrict(doc, v); err != nil {
			return &FieldError{Source: where, Field: "document", Reason: err.Error()}
		}
		return nil
	}
	o := &Object{Source: where}
	switch {
	case tm.APIVersion == APIVersion && tm.Kind == KindService:
		o.Service = &Service{}
		if err := strict(o.Service); err != nil {
			return nil, err
		}
	case tm.APIVersion == APIVersion && tm.Kind == KindNode:
		o.Node = &Node{}
		if err := strict(o.Node); err != nil {
			return nil, err
		}
	case tm.Kind == "" || tm.APIVersion == "":
		return nil, &FieldError{Source: where, Field: "apiVersion/kind", Reason: "both are required"}
	default:
		return nil, &FieldError{Source: where, Field: "kind", Reason: fmt.Sprintf(
			"%s %s is not accepted (want %s Service or Node, v1 Service or Node, discovery.k8s.io/v1 EndpointSlice)", tm.APIVersion, tm.Kind, APIVersion)}
	}
	o.setKey()
	return o, nil
}

// setKey fills the key, defaulting the namespace of namespaced kinds to "default".
func (o *Object) setKey() {
	switch {
	case o.Service != nil:
		if o.Service.Metadata.Namespace == "" {
			o.Service.Metadata.Namespace = "default"
		}
		o.Key = store.Key{Kind: KindService, Namespace: o.Service.Metadata.Namespace, Name: o.Service.Metadata.Name}
	case o.Slice != nil:
		if o.Slice.Namespace == "" {
			o.Slice.Namespace = "default"
		}
		o.Key = store.Key{Kind: KindEndpointSlice, Namespace: o.Slice.Namespace, Name: o.Slice.Name}
	case o.Node != nil:
		o.Key = store.Key{Kind: KindNode, Name: o.Node.Metadata.Name}
	}
}

// Encode returns the stored form of the object: a Kubernetes object as applied, with what bare
// metal allocated for it written in as the API server would.
func (o *Object) Encode() ([]byte, error) {
	switch {
	case o.KubeService != nil:
		kube.WriteAllocations(o.KubeService, o.Service)
		return json.Marshal(o.KubeService)
	case o.KubeNode != nil:
		return json.Marshal(o.KubeNode)
	case o.Service != nil:
		return json.Marshal(o.Service)
	case o.Slice != nil:
		return json.Marshal(o.Slice)
	default:
		return json.Marshal(o.Node)
	}
}

// DecodeStored reads an object back from the store.
func DecodeStored(item store.Item) (*Object, error) {
	o := &Object{Source: "store", Key: item.Key}
	var err error
	var tm struct {
		APIVersion string `json:"apiVersion"`
	}
	_ = json.Unmarshal(item.Value, &tm)
	kubeForm := tm.APIVersion == "v1"
	switch item.Kind {
	case KindService:
		if kubeForm {
			o.KubeService = &corev1.Service{}
			err = json.Unmarshal(item.Value, o.KubeService)
			break
		}
		o.Service = &Service{}
		err = json.Unmarshal(item.Value, o.Service)
	case KindEndpointSlice:
		o.Slice = &discoveryv1.EndpointSlice{}
		err = json.Unmarshal(item.Value, o.Slice)
	case KindNode:
		if kubeForm {
			o.KubeNode = &corev1.Node{}
			err = json.Unmarshal(item.Value, o.KubeNode)
			break
		}
		o.Node = &Node{}
		err = json.Unmarshal(item.Value, o.Node)
	default:
		return nil, fmt.Errorf("stored object %s: unknown kind", item.Key)
	}
	if err != nil {
		return nil, fmt.Errorf("stored object %s: %w", item.Key, err)
	}
	if o.KubeService != nil || o.KubeNode != nil {
		o.view()
	}
	return o, nil
}
