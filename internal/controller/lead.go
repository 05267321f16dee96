package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// takeLead names the cluster's own istiod in topology.istio.io/controlPlaneClusters,
// so that a mesh istiod which (re)connects to the cluster no longer publishes root
// certificates or patches injector caBundles there. docs/switching.md explains why.
func (r *ClusterReconciler) takeLead(ctx context.Context, w *clusterWork, st *switching.State) error {
	return r.patchLead(ctx, w, func(ns *corev1.Namespace) bool { return st.Lead != nil && switching.TakeLead(ns, w.id) })
}

// giveBackLead restores the annotation as the switch found it.
func (r *ClusterReconciler) giveBackLead(ctx context.Context, w *clusterWork, st *switching.State) error {
	return r.patchLead(ctx, w, func(ns *corev1.Namespace) bool { return switching.RestoreLead(ns, st.Lead) })
}

func (r *ClusterReconciler) patchLead(ctx context.Context, w *clusterWork, change func(*corev1.Namespace) bool) error {
	ns := &corev1.Namespace{}
	if err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Name: r.Settings.Namespace}, ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	before := ns.DeepCopy()
	if !change(ns) {
		return nil
	}
	// An optimistic lock: a concurrent edit of the annotations makes this retry
	// instead of overwriting it.
	return w.remote.GetClient().Patch(ctx, ns, client.MergeFromWithOptions(before, client.MergeFromWithOptimisticLock{}))
}
