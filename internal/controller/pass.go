package controller

import (
	"context"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/passread"
)

// beginPass makes the pass read the cluster through a view that sends each live read
// once per pass and starts the reads the cluster's last pass made side by side
// (internal/passread): a pass that changes nothing then reads a far cluster in about
// one round trip instead of one per read. The returned func ends the pass.
func (r *ClusterReconciler) beginPass(ctx context.Context, w *clusterWork) func() {
	var last passread.Reads
	if v, ok := r.passReads.Load(w.id); ok {
		last = v.(passread.Reads)
	}
	view := passread.Begin(ctx, w.remote, last)
	w.remote = view
	return func() { r.passReads.Store(w.id, view.End()) }
}

// forgetPasses drops what the cluster's passes learned, once it is removed.
func (r *ClusterReconciler) forgetPasses(id string) { r.passReads.Delete(id) }

// reportApplied writes the cluster's entry as soon as istiod's objects are applied, when
// that is news: across a far link the mirror and the switch take seconds more, and a
// person reading the cluster's conditions need not wait for them. Until the pass has
// looked at everything, the entry keeps its last observedGeneration and Ready, so the
// ASMMeshConfig's own Ready (kstatus) does not count the cluster as done.
func (r *ClusterReconciler) reportApplied(ctx context.Context, w *clusterWork) {
	now := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionApplied)
	if now == nil || now.Status != metav1.ConditionTrue {
		return
	}
	prev := clusterStatus(w.mc, w.id)
	entry := w.status.DeepCopy()
	entry.ObservedGeneration = 0
	meta.RemoveStatusCondition(&entry.Conditions, v1beta1.ConditionReady)
	if prev != nil {
		if c := meta.FindStatusCondition(prev.Conditions, v1beta1.ConditionApplied); c != nil &&
			c.Status == metav1.ConditionTrue && c.ObservedGeneration == now.ObservedGeneration {
			return // not news: the pass's own write at its end says the rest
		}
		entry.ObservedGeneration = prev.ObservedGeneration
		if ready := meta.FindStatusCondition(prev.Conditions, v1beta1.ConditionReady); ready != nil {
			meta.SetStatusCondition(&entry.Conditions, *ready)
		}
	}
	if err := applyClusterStatus(ctx, r.Local, w.mc, w.id, entry); err != nil {
		// The pass writes the whole entry at its end.
		logf.FromContext(ctx).V(1).Info("could not report istiod applied before the end of the pass", "reason", err.Error())
	}
}
