package baremetal

import (
	"context"
	"encoding/json"
	"fmt"
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
	// Grace is how long a node whose lease expired keeps its endpoints in use (default 5s): the
	// lease's own TTL has already passed by then.
	Grace time.Duration
}

// Run watches the store until ctx ends; synced is called after the first full read.
func (s *Source) Run(ctx context.Context, hub *stream.Hub, synced func()) error {
	st := newSourceState(s.Log)
	grace := s.Grace
	if grace == 0 {
		grace = 5 * time.Second
	}
	st.schedule = func(node string) {
		time.AfterFunc(grace, func() {
			hub.Apply(time.Now(), 0, func(e *compute.Engine) compute.Delta { return st.expire(e, node) })
		})
	}
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
	services map[model.ServiceKey]*Object
	backends map[model.ServiceKey][]model.SliceKey
	failing  map[model.ServiceKey]map[probed]string // why each failing backend fails
	slices   map[model.SliceKey]*discoveryv1.EndpointSlice
	nodes    map[string]*Node     // declared with apply
	leased   map[string]leaseInfo // registered by a connected agent
	down     map[string]bool      // lease expired past the grace: its endpoints are not used
	// connected holds each node's live streams (connected/<node>/<session>): it announces
	// service addresses only while it has one.
	connected map[string]map[string]bool
	schedule  func(node string) // calls expire after the grace
}

func newSourceState(log *slog.Logger) *sourceState {
	if log == nil {
		log = slog.Default()
	}
	return &sourceState{log: log, services: map[model.ServiceKey]*Object{}, backends: map[model.ServiceKey][]model.SliceKey{},
		failing: map[model.ServiceKey]map[probed]string{}, slices: map[model.SliceKey]*discoveryv1.EndpointSlice{},
		nodes: map[string]*Node{}, leased: map[string]leaseInfo{}, down: map[string]bool{}, connected: map[string]map[string]bool{},
		schedule: func(string) {}}
}

func (st *sourceState) apply(e *compute.Engine, b store.Batch) compute.Delta {
	var d compute.Delta
	var wasLeased map[string]leaseInfo
	if b.Reset {
		wasLeased = st.leased
		d.Merge(st.clear(e))
	}
	for _, ev := range b.Events {
		d.Merge(st.event(e, ev))
	}
	for n := range wasLeased {
		if _, ok := st.leased[n]; !ok {
			st.schedule(n) // expired while the watch was away
		}
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
	st.slices, st.nodes, st.leased = map[model.SliceKey]*discoveryv1.EndpointSlice{}, map[string]*Node{}, map[string]leaseInfo{}
	st.connected = map[string]map[string]bool{}
	st.failing = map[model.ServiceKey]map[probed]string{}
	return d
}

func (st *sourceState) event(e *compute.Engine, ev store.Event) compute.Delta {
	if k, ok := ev.Object(); ok {
		return st.object(e, k, ev)
	}
	if rest, ok := strings.CutPrefix(ev.Path, healthPrefix); ok {
		return st.health(e, rest, ev)
	}
	if rest, ok := strings.CutPrefix(ev.Path, connectedPrefix); ok {
		return st.presence(e, rest, ev)
	}
	if node, ok := strings.CutPrefix(ev.Path, leasePrefix); ok {
		return st.lease(e, node, ev)
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
			return st.setNode(e, k.Name)
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
		st.services[svcKey] = o
		return st.setService(e, svcKey)
	case o.Slice != nil:
		return st.setSlice(e, o.Slice)
	default:
		st.nodes[k.Name] = o.Node
		return st.setNode(e, k.Name)
	}
}

// setNode puts what is known of a node into the engine: its declaration, else what its agent
// registered; a node neither declared nor registered is forgotten.
func (st *sourceState) setNode(e *compute.Engine, name string) compute.Delta {
	if n := st.nodes[name]; n != nil {
		mn := modelNode(n)
		mn.Ready = !st.down[name]
		mn.Live = len(st.connected[name]) > 0
		return e.SetNode(mn)
	}
	if l, ok := st.leased[name]; ok {
		return e.SetNode(&model.Node{Name: name, Zone: l.Zone, Addresses: addrs(l.Addresses), Labels: l.Labels, Ready: true,
			Live: len(st.connected[name]) > 0})
	}
	return e.DeleteNode(name)
}

// lease follows a node's registration: leases/<node> appears when its agent connects and goes
// away a TTL after it disconnects; the node is taken down a grace after that.
func (st *sourceState) lease(e *compute.Engine, node string, ev store.Event) compute.Delta {
	if ev.Delete {
		delete(st.leased, node)
		st.schedule(node)
		return compute.Delta{}
	}
	var l leaseInfo
	if err := json.Unmarshal(ev.Value, &l); err != nil {
		st.log.Error("node lease unreadable", "node", node, "err", err)
	}
	st.leased[node] = l
	d := st.setNode(e, node)
	if st.down[node] {
		delete(st.down, node)
		st.log.Info("node is back: its endpoints are used again", "node", node)
		d.Merge(st.resetNode(e, node))
	}
	return d
}

// presence follows a node's connected streams (see presence.go).
func (st *sourceState) presence(e *compute.Engine, rest string, ev store.Event) compute.Delta {
	node, session, ok := parseConnected(rest)
	if !ok {
		return compute.Delta{}
	}
	if ev.Delete {
		delete(st.connected[node], session)
		if len(st.connected[node]) == 0 {
			delete(st.connected, node)
		}
	} else {
		if st.connected[node] == nil {
			st.connected[node] = map[string]bool{}
		}
		st.connected[node][session] = true
	}
	return st.setNode(e, node)
}

// expire takes a node down if its lease has not come back.
func (st *sourceState) expire(e *compute.Engine, node string) compute.Delta {
	if _, back := st.leased[node]; back || st.down[node] {
		return compute.Delta{}
	}
	st.down[node] = true
	st.log.Warn("node lease expired: its endpoints are no longer used", "node", node)
	d := st.setNode(e, node)
	d.Merge(st.resetNode(e, node))
	return d
}

// resetNode recomputes every service and slice with endpoints on node.
func (st *sourceState) resetNode(e *compute.Engine, node string) compute.Delta {
	var d compute.Delta
	for k, s := range st.services {
		for _, b := range s.Service.Spec.Backends {
			if b.Node == node {
				d.Merge(st.setService(e, k))
				break
			}
		}
	}
	for _, s := range st.slices {
		for _, ep := range s.Endpoints {
			if ep.NodeName != nil && *ep.NodeName == node {
				d.Merge(st.setSlice(e, s))
				break
			}
		}
	}
	return d
}

// markDown makes the endpoints on down nodes unusable.
func (st *sourceState) markDown(sl *model.EndpointSlice) {
	for i := range sl.Endpoints {
		if st.down[sl.Endpoints[i].NodeName] {
			sl.Endpoints[i].Ready, sl.Endpoints[i].Serving = false, false
		}
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
	st.slices[ms.Key()] = s
	st.markDown(ms)
	return e.SetSlice(ms)
}

// setService (re)computes a native service and the slices of its backends.
func (st *sourceState) setService(e *compute.Engine, k model.ServiceKey) compute.Delta {
	o := st.services[k]
	ms, err := modelOf(o)
	if err != nil {
		st.log.Error("stored service unreadable; ignored", "service", k.String(), "err", err)
		return st.deleteService(e, k)
	}
	d := e.SetService(ms)
	fresh := backendSlices(o.Service, st.failing[k])
	keep := map[model.SliceKey]bool{}
	for _, sl := range fresh {
		keep[sl.Key()] = true
		st.markDown(sl)
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
	delete(st.failing, k) // a recreated service starts healthy; its records are pruned with it
	return d
}

// health follows a backend's probe result: health/<ns>/<service>/<node>/<address>, a failing
// record or none. A record counts only for the backend on the node that wrote it: no node speaks
// for another's backends, whatever reached the store.
func (st *sourceState) health(e *compute.Engine, rest string, ev store.Event) compute.Delta {
	parts := strings.Split(rest, "/")
	if len(parts) != 4 {
		return compute.Delta{}
	}
	addr, err := netip.ParseAddr(parts[3])
	if err != nil {
		return compute.Delta{}
	}
	k := model.ServiceKey{Namespace: parts[0], Name: parts[1]}
	at := probed{addr: addr.Unmap(), node: parts[2]}
	var h healthRecord
	failing := !ev.Delete && json.Unmarshal(ev.Value, &h) == nil && !h.Ready && h.Node == at.node
	why := ""
	if failing {
		why = fmt.Sprintf("failing its health check on %s since %s", at.node, h.Since.Format(time.RFC3339))
		if h.Message != "" {
			why += ": " + h.Message
		}
	}
	if was, ok := st.failing[k][at]; ok == failing && was == why {
		return compute.Delta{}
	}
	if failing {
		if st.failing[k] == nil {
			st.failing[k] = map[probed]string{}
		}
		st.failing[k][at] = why
	} else {
		delete(st.failing[k], at)
	}
	if st.services[k] == nil {
		return compute.Delta{}
	}
	return st.setService(e, k)
}
