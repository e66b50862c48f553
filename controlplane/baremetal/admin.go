package baremetal

import (
	"context"
	"errors"
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"sigs.k8s.io/yaml"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	v1 "github.com/ganglion-proxy/ganglion/proto/ganglion/v1"
	"github.com/ganglion-proxy/ganglion/store"
)

// Admin implements AdminService over the store.
type Admin struct {
	v1.UnimplementedAdminServiceServer
	Store    *store.Store
	Settings Settings
	// Compute are the brain's engine options, so Diff computes as the brain does.
	Compute compute.Options
}

var _ v1.AdminServiceServer = (*Admin)(nil)

// Apply decodes, validates and stores every document, or none.
func (a *Admin) Apply(ctx context.Context, req *v1.ApplyRequest) (*v1.ApplyResponse, error) {
	objs, err := decodeDocuments(req.Documents)
	if err != nil {
		return nil, err
	}
	res, err := Apply(ctx, a.Store, objs, a.Settings, req.DryRun)
	if err != nil {
		return nil, grpcError(err)
	}
	resp := &v1.ApplyResponse{}
	for _, k := range res.Stored {
		resp.Applied = append(resp.Applied, ref(k))
	}
	for _, k := range res.Unchanged {
		resp.Unchanged = append(resp.Unchanged, ref(k))
	}
	return resp, nil
}

// Diff says what applying the documents would change on each node; nothing is stored.
func (a *Admin) Diff(ctx context.Context, req *v1.DiffRequest) (*v1.DiffResponse, error) {
	objs, err := decodeDocuments(req.Documents)
	if err != nil {
		return nil, err
	}
	nodes, err := Diff(ctx, a.Store, objs, a.Settings, a.Compute)
	if err != nil {
		return nil, grpcError(err)
	}
	return &v1.DiffResponse{Nodes: nodes}, nil
}

func decodeDocuments(docs []*v1.Document) ([]*Object, error) {
	var objs []*Object
	for i, d := range docs {
		source := d.Source
		if source == "" {
			source = "document " + strconv.Itoa(i+1)
		}
		got, err := Decode(source, []byte(d.Content))
		if err != nil {
			return nil, grpcError(err)
		}
		objs = append(objs, got...)
	}
	if len(objs) == 0 {
		return nil, status.Error(codes.InvalidArgument, "documents: nothing to apply")
	}
	return objs, nil
}

// Get returns the stored objects the selector matches, as YAML.
func (a *Admin) Get(ctx context.Context, req *v1.GetRequest) (*v1.GetResponse, error) {
	snap, err := a.Store.Snapshot(ctx)
	if err != nil {
		return nil, grpcError(err)
	}
	sel := req.GetSelector()
	resp := &v1.GetResponse{}
	for _, it := range snap.Items {
		if !matches(sel, it.Key) {
			continue
		}
		// An object that cannot be read is skipped, not returned: one corrupt object must not
		// fail every get (clients decode what they get). The store logs and counts it.
		if _, err := DecodeStored(it); err != nil {
			a.Store.SkipUnreadable(it.Key, err)
			continue
		}
		y, err := yaml.JSONToYAML(it.Value)
		if err != nil {
			a.Store.SkipUnreadable(it.Key, err)
			continue
		}
		resp.Objects = append(resp.Objects, &v1.Document{Source: it.Key.String(), Content: string(y)})
	}
	return resp, nil
}

// Delete removes the named objects, all or none.
func (a *Admin) Delete(ctx context.Context, req *v1.DeleteRequest) (*v1.DeleteResponse, error) {
	var keys []store.Key
	for _, r := range req.Objects {
		k, err := keyOf(r)
		if err != nil {
			return nil, grpcError(err)
		}
		keys = append(keys, k)
	}
	if err := Delete(ctx, a.Store, keys); err != nil {
		return nil, grpcError(err)
	}
	resp := &v1.DeleteResponse{}
	for _, k := range keys {
		resp.Deleted = append(resp.Deleted, ref(k))
	}
	return resp, nil
}

// kinds maps the names users type to stored kinds.
var kinds = map[string]string{
	"service": KindService, "services": KindService, "svc": KindService,
	"endpointslice": KindEndpointSlice, "endpointslices": KindEndpointSlice,
	"node": KindNode, "nodes": KindNode, "no": KindNode,
}

// NormalizeKind returns the stored kind a user's word names, or "".
func NormalizeKind(s string) string { return kinds[strings.ToLower(s)] }

func keyOf(r *v1.ObjectRef) (store.Key, error) {
	kind := NormalizeKind(r.Kind)
	if kind == "" {
		return store.Key{}, &FieldError{Source: "request", Field: "kind", Reason: "unknown kind " + r.Kind}
	}
	ns := r.Namespace
	if kind == KindNode {
		ns = ""
	} else if ns == "" {
		ns = "default"
	}
	if r.Name == "" {
		return store.Key{}, &FieldError{Source: "request", Field: "name", Reason: "required"}
	}
	// Keys are built from valid names only, whatever a request says.
	if errs := dnsLabel(ns); ns != "" && len(errs) > 0 {
		return store.Key{}, &FieldError{Source: "request", Field: "namespace", Reason: strings.Join(errs, "; ")}
	}
	if errs := dnsSubdomain(r.Name); len(errs) > 0 {
		return store.Key{}, &FieldError{Source: "request", Field: "name", Reason: strings.Join(errs, "; ")}
	}
	return store.Key{Kind: kind, Namespace: ns, Name: r.Name}, nil
}

func matches(sel *v1.ObjectRef, k store.Key) bool {
	if sel == nil {
		return true
	}
	if sel.Kind != "" && NormalizeKind(sel.Kind) != k.Kind {
		return false
	}
	if sel.Namespace != "" && sel.Namespace != k.Namespace {
		return false
	}
	return sel.Name == "" || sel.Name == k.Name
}

func ref(k store.Key) *v1.ObjectRef {
	return &v1.ObjectRef{Kind: k.Kind, Namespace: k.Namespace, Name: k.Name}
}

func grpcError(err error) error {
	switch {
	case errors.Is(err, ErrInvalid):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, store.ErrConflict):
		return status.Error(codes.Aborted, err.Error())
	case errors.Is(err, store.ErrTooLarge), errors.Is(err, store.ErrQuota):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Unavailable, err.Error())
}
