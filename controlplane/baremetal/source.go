package baremetal

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/ganglion-proxy/ganglion/controlplane/compute"
	"github.com/ganglion-proxy/ganglion/controlplane/model"
	"github.com/ganglion-proxy/ganglion/controlplane/stream"
	"github.com/ganglion-proxy/ganglion/store"
)

// Source feeds the brain from the store: every stored object, and the health of native backends
// as agents report it, converted into the model. The store's revision is the hub's revision, so
// replicas on the same etcd compare.
type Source struct {
	Store *store.Store
	Log   *slog.Logger
}

// Run watches the store until ctx ends; synced is called after the first full read.
func (s *Source) Run(ctx context.Context, hub *stream.Hub, synced func()) error {
	st := newSourceState(s.Log)
	first := true
	return s.Store.Watch(ctx, func(b store.Batch) {
		hub.Apply(time.Now(), uint64(b.Revision), func(e *compute.Engine) compute.Delta { return st.apply(e, b) })
		if first {
			first = false
			synced()
		}
	})
}

// sourceState is what the source has put into the engine, so deletions and resets can be undone.
type sourceState struct {
	log      *slog.Logger
	services map[model.ServiceKey]*Service
	backends map[model.ServiceKey][]model.SliceKey
	failing  map[model.ServiceKey]map[netip.Addr]bool
	slices   map[model.SliceKey]bool
	nodes    map[string]bool
}

func newSourceState(log *slog.Logger) *sourceState {
	if log == nil {
		log = slog.Default()
	}
	return &sourceState{log: log, services: map[model.ServiceKey]*Service{}, backends: map[model.ServiceKey][]model.SliceKey{},
		failing: map[model.ServiceKey]map[netip.Addr]bool{}, slices: map[model.SliceKey]bool{}, nodes: map[string]bool{}}
}

func (st *sourceState) apply(e *compute.Engine, b store.Batch) compute.Delta {
	var d compute.Delta
	if b.Reset {
		d.Merge(st.clear(e))
	}
	for _, ev := range b.Events {
		d.Merge(st.event(e, ev))
	}
	return d
}

// clear removes everything before a reset replays the whole state.
func (st *sourceState) clear(e *compute.Engine) compute.Delta {
	var d compute.Delta
	for k := range st.services {
		d.Merge(st.deleteService(e, k))
	}
	for k := range st.slices {
		d.Merge(e.DeleteSlice(k))
	}
	for n := range st.nodes {
		d.Merge(e.DeleteNode(n))
	}
	st.slices, st.nodes = map[model.SliceKey]bool{}, map[string]bool{}
	st.failing = map[model.ServiceKey]map[netip.Addr]bool{}
	return d
}

func (st *sourceState) event(e *compute.Engine, ev store.Event) compute.Delta {
	if k, ok := ev.Object(); ok {
		return st.object(e, k, ev)
	}
	if rest, ok := strings.CutPrefix(ev.Path, healthPrefix); ok {
		return st.health(e, rest, ev)
	}
	return compute.Delta{}
}

func (st *sourceState) object(e *compute.Engine, k store.Key, ev store.Event) compute.Delta {
	svcKey := model.ServiceKey{Namespace: k.Namespace, Name: k.Name}
	if ev.Delete {
		switch k.Kind {
		case KindService:
			return st.deleteService(e, svcKey)
		case KindEndpointSlice:
			sk := model.SliceKey{Namespace: k.Namespace, Name: k.Name}
			delete(st.slices, sk)
			return e.DeleteSlice(sk)
		case KindNode:
			delete(st.nodes, k.Name)
			return e.DeleteNode(k.Name)
		}
		return compute.Delta{}
	}
	o, err := DecodeStored(store.Item{Key: k, Value: ev.Value})
	if err != nil {
		st.log.Error("stored object unreadable; ignored", "key", k.String(), "err", err)
		return compute.Delta{}
	}
	switch {
	case o.Service != nil:
		st.services[svcKey] = o.Service
		return st.setService(e, svcKey)
	case o.Slice != nil:
		return st.setSlice(e, o.Slice)
	default:
		st.nodes[k.Name] = true
		return e.SetNode(modelNode(o.Node))
	}
}

func (st *sourceState) setSlice(e *compute.Engine, s *discoveryv1.EndpointSlice) compute.Delta {
	ms, err := modelSlice(s)
	if err != nil || ms == nil {
		if err != nil {
			st.log.Error("stored endpoint slice unusable; ignored", "slice", s.Namespace+"/"+s.Name, "err", err)
		}
		return compute.Delta{}
	}
	st.slices[ms.Key()] = true
	return e.SetSlice(ms)
}

// setService (re)computes a native service and the slices of its backends.
func (st *sourceState) setService(e *compute.Engine, k model.ServiceKey) compute.Delta {
	s := st.services[k]
	d := e.SetService(modelService(s))
	fresh := backendSlices(s, st.failing[k])
	keep := map[model.SliceKey]bool{}
	for _, sl := range fresh {
		keep[sl.Key()] = true
		d.Merge(e.SetSlice(sl))
	}
	for _, old := range st.backends[k] {
		if !keep[old] {
			d.Merge(e.DeleteSlice(old))
		}
	}
	st.backends[k] = nil
	for sk := range keep {
		st.backends[k] = append(st.backends[k], sk)
	}
	return d
}

func (st *sourceState) deleteService(e *compute.Engine, k model.ServiceKey) compute.Delta {
	d := e.DeleteService(k)
	for _, sk := range st.backends[k] {
		d.Merge(e.DeleteSlice(sk))
	}
	delete(st.backends, k)
	delete(st.services, k)
	return d
}

// health records a backend's probe result: health/<ns>/<service>/<address>, "fail" or gone.
func (st *sourceState) health(e *compute.Engine, rest string, ev store.Event) compute.Delta {
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return compute.Delta{}
	}
	addr, err := netip.ParseAddr(parts[2])
	if err != nil {
		return compute.Delta{}
	}
	k := model.ServiceKey{Namespace: parts[0], Name: parts[1]}
	var h healthRecord
	failing := !ev.Delete && json.Unmarshal(ev.Value, &h) == nil && !h.Ready
	if st.failing[k] == nil {
		st.failing[k] = map[netip.Addr]bool{}
	}
	if st.failing[k][addr] == failing {
		return compute.Delta{}
	}
	if failing {
		st.failing[k][addr] = true
	} else {
		delete(st.failing[k], addr)
	}
	if st.services[k] == nil {
		return compute.Delta{}
	}
	return st.setService(e, k)
}
