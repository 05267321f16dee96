package controller

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
)

// allClusters is the event that concerns every cluster with an entry.
const allClusters = "*"

// kindWatches starts watches on kinds that may not exist yet: Istio's kinds in a
// data-plane cluster exist only once the mirror installed their CRDs, and a mesh
// cluster may run an Istio older than istio.io/api. A controller's watch on a missing
// kind would fail, so these are added, kind by kind, as soon as the kind exists, and
// their events reach the cluster controller through a channel.
type kindWatches struct {
	events chan event.TypedGenericEvent[string]
	// copyChanged is told of each event of a cluster's copies (ownedObjectChanged);
	// nil: the cluster's pass is queued.
	copyChanged func(cluster string, gvk schema.GroupVersionKind, obj any, deleted bool)

	mu      sync.Mutex
	started map[cache.Cache]map[schema.GroupVersionKind]bool
}

func newKindWatches(copyChanged func(cluster string, gvk schema.GroupVersionKind, obj any, deleted bool)) *kindWatches {
	return &kindWatches{
		copyChanged: copyChanged,
		events:      make(chan event.TypedGenericEvent[string], 1024),
		started:     map[cache.Cache]map[schema.GroupVersionKind]bool{},
	}
}

// ensure watches every kind in c that exists and is not watched yet; events name
// target. metadataOnly keeps the cache small where only changes matter.
func (k *kindWatches) ensure(ctx context.Context, c cache.Cache, kinds []schema.GroupVersionKind, target string, metadataOnly bool) {
	for _, gvk := range kinds {
		k.mu.Lock()
		done := k.started[c][gvk]
		k.mu.Unlock()
		if done {
			continue
		}
		var obj client.Object
		if metadataOnly {
			m := &metav1.PartialObjectMetadata{}
			m.SetGroupVersionKind(gvk)
			obj = m
		} else {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(gvk)
			obj = u
		}
		informer, err := c.GetInformer(ctx, obj, cache.BlockUntilSynced(false))
		if err != nil {
			continue // the kind does not exist (yet); the next reconcile tries again
		}
		notify := func(any) {
			if target == allClusters {
				metrics.MeshConfigChanged() // a change of the mesh's configuration, not of a copy
			}
			k.send(target)
		}
		changed, deleted := notify, notify
		if target != allClusters && k.copyChanged != nil {
			changed = func(o any) { k.copyChanged(target, gvk, o, false) }
			deleted = func(o any) { k.copyChanged(target, gvk, o, true) }
		}
		if _, err := informer.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc: changed, DeleteFunc: deleted, UpdateFunc: func(_, o any) { changed(o) },
		}); err != nil {
			continue
		}
		k.mu.Lock()
		if k.started[c] == nil {
			k.started[c] = map[schema.GroupVersionKind]bool{}
		}
		k.started[c][gvk] = true
		k.mu.Unlock()
	}
}

// forget stops the watches started in c, for example once the kinds' CRDs are gone.
func (k *kindWatches) forget(ctx context.Context, c cache.Cache) {
	k.mu.Lock()
	started := k.started[c]
	delete(k.started, c)
	k.mu.Unlock()
	for gvk := range started {
		m := &metav1.PartialObjectMetadata{}
		m.SetGroupVersionKind(gvk)
		_ = c.RemoveInformer(ctx, m)
	}
}

// send never blocks an informer: events only say "look again", so when the buffer is
// full a pending one already says it.
func (k *kindWatches) send(target string) {
	select {
	case k.events <- event.TypedGenericEvent[string]{Object: target}:
	default:
	}
}
