package controller

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	toolscache "k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/multicluster-runtime/pkg/multicluster"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"
)

// ownWriteEcho reports an event object of a cluster that is the echo of the operator's
// own write: the object is at the resourceVersion its last apply got back (or found
// as it wants it), so there is nothing to do. Without this, every write of a pass
// wakes the cluster for one more pass: a repaired object cost two.
func (r *ClusterReconciler) ownWriteEcho(cluster string, gvk schema.GroupVersionKind, obj any) bool {
	o, ok := obj.(metav1.Object)
	return ok && r.Applier != nil && r.Applier.AsApplied(cluster, gvk, o)
}

// ownedObjectChanged handles an event of an object the operator owns in a cluster:
// nothing for the echo of its own write (a deletion never is one: a deleted object
// keeps the resourceVersion it had), else a repair of that object.
func (r *ClusterReconciler) ownedObjectChanged(cluster string, gvk schema.GroupVersionKind, obj any, deleted bool) {
	if !deleted && r.ownWriteEcho(cluster, gvk, obj) {
		return
	}
	if d, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, ok := obj.(metav1.Object)
	if !ok {
		r.watches.send(cluster) // not an object: a pass looks at everything
		return
	}
	rv := o.GetResourceVersion()
	if deleted {
		rv = ""
	}
	r.repairs.note(cluster, gvk, o.GetNamespace(), o.GetName(), rv)
}

type requestQueue = workqueue.TypedRateLimitingInterface[mcreconcile.Request]

// ownedObjectEvents turns a cluster's events of its owned objects of kind gvk into
// repairs (ownedObjectChanged).
func (r *ClusterReconciler) ownedObjectEvents(gvk schema.GroupVersionKind) func(multicluster.ClusterName, cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
	return func(name multicluster.ClusterName, cl cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
		id := string(name)
		return handler.TypedFuncs[client.Object, mcreconcile.Request]{
			CreateFunc: func(_ context.Context, e event.TypedCreateEvent[client.Object], _ requestQueue) {
				r.ownedObjectChanged(id, gvk, e.Object, false)
			},
			UpdateFunc: func(_ context.Context, e event.TypedUpdateEvent[client.Object], _ requestQueue) {
				r.ownedObjectChanged(id, gvk, e.ObjectNew, false)
			},
			DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], _ requestQueue) {
				r.ownedObjectChanged(id, gvk, e.Object, true)
			},
			GenericFunc: sameCluster(name, cl).Generic,
		}
	}
}

// istiodDeploymentEvents: istiod's Deployment is repaired when deleted; its other
// changes (its status above all: IstiodReady, the switch) need a pass, but not the
// echoes of the operator's own writes.
func (r *ClusterReconciler) istiodDeploymentEvents(gvk schema.GroupVersionKind) func(multicluster.ClusterName, cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
	return func(name multicluster.ClusterName, cl cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
		id, pass := string(name), sameCluster(name, cl)
		return handler.TypedFuncs[client.Object, mcreconcile.Request]{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q requestQueue) {
				if !r.ownWriteEcho(id, gvk, e.Object) {
					pass.Create(ctx, e, q)
				}
			},
			UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q requestQueue) {
				if !r.ownWriteEcho(id, gvk, e.ObjectNew) {
					pass.Update(ctx, e, q)
				}
			},
			DeleteFunc: func(_ context.Context, e event.TypedDeleteEvent[client.Object], _ requestQueue) {
				r.ownedObjectChanged(id, gvk, e.Object, true)
			},
			GenericFunc: pass.Generic,
		}
	}
}
