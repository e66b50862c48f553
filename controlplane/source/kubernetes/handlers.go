package kubernetes

import (
	"log/slog"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/tools/cache"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/kube"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
)

// handlers turn informer events into hub changes, one object per change: the hub coalesces
// bursts itself, so batching here would only add latency.
type handlers struct {
	hub *stream.Hub
	log *slog.Logger
}

// parseRV reads a resourceVersion. It is opaque by contract but an etcd revision in practice,
// shared by every resource type; one that does not parse advances nothing.
func parseRV(rv string) uint64 {
	n, err := strconv.ParseUint(rv, 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// objRV is the resourceVersion of an informer object (0 for tombstones).
func objRV(obj any) uint64 {
	a, err := meta.Accessor(obj)
	if err != nil {
		return 0
	}
	return parseRV(a.GetResourceVersion())
}

// advance raises the hub's revision without changing the model.
func (h *handlers) advance(rev uint64) {
	h.hub.Apply(time.Time{}, rev, func(*compute.Engine) compute.Delta { return compute.Delta{} })
}

// untomb unwraps the final state of an object deleted while the watch was down.
func untomb(obj any) any {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		return t.Obj
	}
	return obj
}

func (h *handlers) services() cache.ResourceEventHandler {
	set := func(obj any) {
		s, ok := obj.(*corev1.Service)
		if !ok {
			return
		}
		m, err := kube.Service(s)
		if err != nil {
			// The API server validates services, so this is a field we read more strictly than it
			// does: proxying nothing for it is safer than proxying a guess.
			h.log.Error("service not proxied", "service", s.Namespace+"/"+s.Name, "err", err)
			h.hub.Apply(time.Time{}, objRV(s), func(e *compute.Engine) compute.Delta {
				return e.DeleteService(model.ServiceKey{Namespace: s.Namespace, Name: s.Name})
			})
			return
		}
		h.hub.Apply(time.Time{}, objRV(s), func(e *compute.Engine) compute.Delta { return e.SetService(m) })
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { set(obj) },
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			obj = untomb(obj)
			s, ok := obj.(*corev1.Service)
			if !ok {
				return
			}
			h.hub.Apply(time.Time{}, objRV(obj), func(e *compute.Engine) compute.Delta {
				return e.DeleteService(model.ServiceKey{Namespace: s.Namespace, Name: s.Name})
			})
		},
	}
}

// triggerTime is when the EndpointSlice controller saw the change begin (zero: unknown, now).
func triggerTime(s *discoveryv1.EndpointSlice) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s.Annotations[kube.AnnotationTriggerTime])
	if err != nil {
		return time.Time{}
	}
	return t
}

func (h *handlers) slices() cache.ResourceEventHandler {
	del := func(s *discoveryv1.EndpointSlice) func(*compute.Engine) compute.Delta {
		return func(e *compute.Engine) compute.Delta {
			return e.DeleteSlice(model.SliceKey{Namespace: s.Namespace, Name: s.Name})
		}
	}
	set := func(obj any) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok {
			return
		}
		m, err := kube.EndpointSlice(s)
		switch {
		case err != nil:
			h.log.Error("endpoint slice not used", "slice", s.Namespace+"/"+s.Name, "err", err)
			h.hub.Apply(triggerTime(s), objRV(s), del(s))
		case m == nil:
			// FQDN slices and slices of no service: a slice can become one by an update.
			h.hub.Apply(triggerTime(s), objRV(s), del(s))
		default:
			h.hub.Apply(m.TriggerTime, objRV(s), func(e *compute.Engine) compute.Delta { return e.SetSlice(m) })
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { set(obj) },
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			obj = untomb(obj)
			if s, ok := obj.(*discoveryv1.EndpointSlice); ok {
				h.hub.Apply(triggerTime(s), objRV(obj), del(s))
			}
		},
	}
}

func (h *handlers) nodes() cache.ResourceEventHandler {
	set := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			m := kube.Node(n)
			h.hub.Apply(time.Time{}, objRV(n), func(e *compute.Engine) compute.Delta { return e.SetNode(m) })
		}
	}
	return cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { set(obj) },
		UpdateFunc: func(_, obj any) { set(obj) },
		DeleteFunc: func(obj any) {
			obj = untomb(obj)
			if n, ok := obj.(*corev1.Node); ok {
				h.hub.Apply(time.Time{}, objRV(obj), func(e *compute.Engine) compute.Delta { return e.DeleteNode(n.Name) })
			}
		},
	}
}
