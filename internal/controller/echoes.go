package controller

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
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
// as it wants it), so a pass would find nothing to do. Without this, every write of a
// pass wakes the cluster for one more pass: a repaired object cost two.
func (r *ClusterReconciler) ownWriteEcho(cluster string, gvk schema.GroupVersionKind, obj any) bool {
	o, ok := obj.(metav1.Object)
	return ok && r.Applier != nil && r.Applier.AsApplied(cluster, gvk, o)
}

// sameClusterUnlessEcho queues the event's cluster, except for creates and updates
// that are echoes of the operator's own writes of kind gvk. Deletions always pass: a
// deleted object keeps the resourceVersion it had.
func (r *ClusterReconciler) sameClusterUnlessEcho(gvk schema.GroupVersionKind) func(multicluster.ClusterName, cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
	return func(name multicluster.ClusterName, cl cluster.Cluster) handler.TypedEventHandler[client.Object, mcreconcile.Request] {
		next := sameCluster(name, cl)
		type queue = workqueue.TypedRateLimitingInterface[mcreconcile.Request]
		return handler.TypedFuncs[client.Object, mcreconcile.Request]{
			CreateFunc: func(ctx context.Context, e event.TypedCreateEvent[client.Object], q queue) {
				if !r.ownWriteEcho(string(name), gvk, e.Object) {
					next.Create(ctx, e, q)
				}
			},
			UpdateFunc: func(ctx context.Context, e event.TypedUpdateEvent[client.Object], q queue) {
				if !r.ownWriteEcho(string(name), gvk, e.ObjectNew) {
					next.Update(ctx, e, q)
				}
			},
			DeleteFunc:  next.Delete,
			GenericFunc: next.Generic,
		}
	}
}
