package controller

import (
	"context"

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
