// Package kubernetes is the brain's source of truth in a cluster: client-go informers on
// Services, EndpointSlices and Nodes, converted with controlplane/kube and fed into the hub.
//
// Several brain replicas run this source at once. They read the same API server and compute the
// same versions, so an agent can move between them; the revision they report is the highest
// resourceVersion they have read, which lets an agent refuse a replica that is behind it.
package kubernetes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/client-go/informers"
	clientset "k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/ganglion-proxy/ganglion/controlplane/stream"
)

// Source watches the API server through Client.
type Source struct {
	// Client is the API client; the brain needs list and watch on services, endpointslices and
	// nodes, nothing else.
	Client clientset.Interface
	// ProxyName is compute.Options.ProxyName: the value of service.kubernetes.io/service-proxy-name
	// this brain claims, or empty to proxy only unlabelled services, like kube-proxy.
	ProxyName string
	// Log receives the source's events; slog.Default when nil.
	Log *slog.Logger
}

// Run starts the informers, feeds every change into hub until ctx ends, and calls synced once
// every informer has listed and every listed object is in the model.
func (s *Source) Run(ctx context.Context, hub *stream.Hub, synced func()) error {
	if s.Client == nil {
		return errors.New("kubernetes source: no client")
	}
	if s.Log == nil {
		s.Log = slog.Default()
	}
	h := &handlers{hub: hub, log: s.Log}

	// Like kube-proxy: services and their slices are filtered by the API server, so a cluster
	// full of services owned by another proxy costs this brain nothing. Nodes are never filtered.
	filtered := informers.NewSharedInformerFactoryWithOptions(s.Client, 0,
		informers.WithTweakListOptions(tweak(s.ProxyName)), informers.WithTransform(stripManagedFields))
	all := informers.NewSharedInformerFactoryWithOptions(s.Client, 0, informers.WithTransform(stripManagedFields))

	infs := []cache.SharedIndexInformer{
		filtered.Core().V1().Services().Informer(),
		filtered.Discovery().V1().EndpointSlices().Informer(),
		all.Core().V1().Nodes().Informer(),
	}
	kinds := []string{"services", "endpointslices", "nodes"}
	hs := []cache.ResourceEventHandler{h.services(), h.slices(), h.nodes()}
	var regs []cache.InformerSynced
	for i, inf := range infs {
		if err := inf.SetWatchErrorHandlerWithContext(watchErrorLogger(s.Log, kinds[i])); err != nil {
			return fmt.Errorf("kubernetes source: %w", err)
		}
		reg, err := inf.AddEventHandler(hs[i])
		if err != nil {
			return fmt.Errorf("kubernetes source: %w", err)
		}
		regs = append(regs, reg.HasSynced)
	}
	filtered.Start(ctx.Done())
	all.Start(ctx.Done())
	defer func() {
		filtered.Shutdown()
		all.Shutdown()
	}()

	start := time.Now()
	// The registrations' HasSynced, not the informers': they turn true only after our handlers
	// have seen every listed object, so the first compute is complete when synced is called.
	if !waitSynced(ctx, s.Log, 10*time.Second, kinds, regs) {
		return nil // ctx ended: the brain is stopping
	}
	// A list's resourceVersion covers deletions this replica never saw as objects: without it, a
	// replica started after a deletion would look behind one that watched it happen.
	var rev uint64
	for _, inf := range infs {
		rev = max(rev, parseRV(inf.LastSyncResourceVersion()))
	}
	h.advance(rev)
	s.Log.Info("kubernetes source synced", "took", time.Since(start).Round(time.Millisecond), "revision", hub.Revision())
	synced()
	<-ctx.Done()
	return nil
}

// stripManagedFields drops managedFields, which the brain never reads and which are often the
// largest part of an object held in the informers' caches.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}
