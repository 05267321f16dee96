package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// reconcileRemoval deletes everything the operator put in a cluster whose entry is gone
// (or whose ASMMeshConfig is being deleted), then drops the cluster's status entry.
func (r *ClusterReconciler) reconcileRemoval(ctx context.Context, w *clusterWork) (ctrl.Result, error) {
	if clusterStatus(w.mc, w.id) == nil {
		metrics.ForgetCluster(w.id)
		return ctrl.Result{}, nil
	}
	log := logf.FromContext(ctx)
	state, found, err := r.Clusters.Lookup(ctx, w.id)
	if err != nil {
		return ctrl.Result{}, err
	}
	if found && state.Connecting {
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	if !found || state.Cluster == nil {
		// Without a usable remote secret the cluster is out of reach for good.
		log.Info("cluster has no usable remote secret; forgetting it without cleanup")
		if w.status.AppliedHash != "" {
			r.event(w, corev1.EventTypeWarning, ReasonRemoteSecretAbsent,
				"cluster %s has no usable remote secret; objects labelled %s=%s there could not be removed", w.id, render.ClusterIDLabel, w.id)
		}
		r.Applier.Forget(w.id)
		return ctrl.Result{}, applyClusterStatus(ctx, r.Local, w.mc, w.id, nil)
	}
	w.remote = state.Cluster
	cleanCtx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	own := ownership(w.id)
	// Injection goes back to the mesh control plane before istiod goes away.
	err = r.switchBack(cleanCtx, w)
	if err == nil {
		_, err = r.reconcileAccess(cleanCtx, w, false)
	}
	if err == nil {
		// The cache finds what to delete; the API server confirms nothing is left.
		_, err = r.Applier.Prune(cleanCtx, w.id, w.remote.GetClient(), w.remote.GetClient(), own, render.OwnedKinds, nil)
	}
	var left apply.PruneResult
	if err == nil {
		left, err = r.Applier.Prune(cleanCtx, w.id, secretsIn(r.Settings.Namespace, w.remote.GetAPIReader()), w.remote.GetClient(), own, allOwnedKinds(), nil)
	}
	if errors.Is(err, errGatewaysRollingOut) {
		w.set(v1beta1.ConditionReady, false, ReasonWaitingForGateways,
			"istiod in cluster %s stays until the gateways restarted for the switch-back run new pods (%v)", w.id, err)
		return ctrl.Result{RequeueAfter: 2 * time.Second}, applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
	}
	if errors.Is(err, errAddressChanged) {
		// A person has to look: istiod stays until the address leads to the mesh again.
		w.set(v1beta1.ConditionSwitched, false, ReasonAddressChanged, "%v", err)
		w.set(v1beta1.ConditionReady, false, ReasonAddressChanged, "removal of istiod from cluster %s waits: %v", w.id, err)
		r.event(w, corev1.EventTypeWarning, ReasonAddressChanged, "%v", err)
		return ctrl.Result{RequeueAfter: time.Minute}, applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
	}
	if err != nil {
		w.set(v1beta1.ConditionApplied, false, ReasonUnreachable, "removing istiod from cluster %s failed; retrying with backoff: %s", w.id, errorSummary(err))
		w.set(v1beta1.ConditionReady, false, ReasonRemoving, "removing istiod from cluster %s", w.id)
		return ctrl.Result{}, errors.Join(fmt.Errorf("cluster %s: %w", w.id, err), applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status))
	}
	if left.Remaining > 0 {
		w.set(v1beta1.ConditionApplied, false, ReasonRemoving, "%d objects are still being deleted from cluster %s", left.Remaining, w.id)
		w.set(v1beta1.ConditionReady, false, ReasonRemoving, "removing istiod from cluster %s", w.id)
		return ctrl.Result{RequeueAfter: 2 * time.Second}, applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
	}
	if err := r.labelNetwork(cleanCtx, w, ""); err != nil {
		return ctrl.Result{}, err
	}
	if err := r.deleteOwnNamespace(cleanCtx, w); err != nil {
		return ctrl.Result{}, err
	}
	r.Applier.Forget(w.id)
	r.watches.forget(ctx, w.remote.GetCache())
	log.Info("removed istiod from cluster")
	r.event(w, corev1.EventTypeNormal, ReasonRemoving, "removed istiod and everything the operator created from cluster %s", w.id)
	return ctrl.Result{}, applyClusterStatus(ctx, r.Local, w.mc, w.id, nil)
}

// secretsIn lists Secrets only in namespace, where the operator keeps its own (and may
// read them: docs/remote-permissions.md); other reads pass through.
func secretsIn(namespace string, reader client.Reader) client.Reader {
	return namespacedSecrets{Reader: reader, namespace: namespace}
}

type namespacedSecrets struct {
	client.Reader
	namespace string
}

func (n namespacedSecrets) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	if gvk := list.GetObjectKind().GroupVersionKind(); gvk.Group == "" && gvk.Kind == "SecretList" {
		opts = append(opts, client.InNamespace(n.namespace))
	}
	return n.Reader.List(ctx, list, opts...)
}
