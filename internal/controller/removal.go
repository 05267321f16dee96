package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// reconcileRemoval deletes everything the operator put in a cluster whose entry is gone
// (or whose ASMMeshConfig is being deleted), then drops the cluster's status entry. A
// cluster it cannot reach is retried and reported, never forgotten; it gives up only on
// a cluster that no remote secret provides any more, or that a person abandoned.
func (r *ClusterReconciler) reconcileRemoval(ctx context.Context, w *clusterWork) (ctrl.Result, error) {
	if clusterStatus(w.mc, w.id) == nil {
		metrics.ForgetCluster(w.id)
		r.forgetPasses(w.id)
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
	record, err := r.loadRecordCopy(ctx, w.id)
	if err != nil {
		return ctrl.Result{}, err
	}
	switch {
	case !found || w.mc.Abandons(w.id):
		return r.giveUp(ctx, w, found, record)
	case state.Cluster == nil && nothingLeft(&w.status, record):
		log.Info("cluster was never connected and has nothing of the operator's; forgetting it")
		r.Applier.Forget(w.id)
		return ctrl.Result{}, applyClusterStatus(ctx, r.Local, w.mc, w.id, nil)
	case state.Cluster == nil && state.Problem != "":
		w.set(v1beta1.ConditionConnected, false, ReasonInvalidKubeconfig, "%s; fix the remote secret", state.Problem)
		// A change of the remote secret wakes the cluster up; look again now and then.
		return ctrl.Result{RequeueAfter: time.Minute}, r.removalWaits(ctx, w, ReasonInvalidKubeconfig,
			"the kubeconfig in remote secret %s cannot be used (%s); fix the remote secret", state.Secret, state.Problem)
	case state.Cluster == nil:
		// Any other reason a remote secret's cluster has no client (not connected yet)
		// is one to retry.
		why := "the operator has not connected to it yet"
		if state.ConnectError != nil {
			why += " (" + errorSummary(state.ConnectError) + ")"
		}
		w.set(v1beta1.ConditionConnected, false, ReasonUnreachable, "cluster %s: %s; retrying with backoff", w.id, why)
		return ctrl.Result{}, errors.Join(fmt.Errorf("cluster %s is not connected", w.id),
			r.removalWaits(ctx, w, ReasonUnreachable, "%s; retrying with backoff", why))
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
		// Not the CRDs: removeCRDs looks first whether others' objects need them.
		left, err = r.Applier.Prune(cleanCtx, w.id, secretsIn(r.Settings.Namespace, w.remote.GetAPIReader()), w.remote.GetClient(), own, withoutCRDs(allOwnedKinds()), nil)
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
	if errors.Is(err, errSwitchRecordLost) {
		w.set(v1beta1.ConditionSwitched, false, ReasonSwitchRecordLost, "%v", err)
		r.event(w, corev1.EventTypeWarning, ReasonSwitchRecordLost, "%v", err)
		return ctrl.Result{RequeueAfter: time.Minute}, r.removalWaits(ctx, w, ReasonSwitchRecordLost, "%v", err)
	}
	if err != nil {
		w.set(v1beta1.ConditionApplied, false, ReasonUnreachable, "removing istiod from cluster %s failed; retrying with backoff: %s", w.id, errorSummary(err))
		var werr error
		if unanswered(err) {
			w.set(v1beta1.ConditionConnected, false, ReasonUnreachable, "the API server of cluster %s did not answer; retrying with backoff (%s)", w.id, errorSummary(err))
			werr = r.removalWaits(ctx, w, ReasonUnreachable, "its API server did not answer (%s); retrying with backoff", errorSummary(err))
		} else {
			w.set(v1beta1.ConditionReady, false, ReasonRemoving, "removing istiod from cluster %s failed: %s; retrying with backoff", w.id, errorSummary(err))
			werr = applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
		}
		return ctrl.Result{}, errors.Join(fmt.Errorf("cluster %s: %w", w.id, err), werr)
	}
	if left.Remaining > 0 {
		w.set(v1beta1.ConditionApplied, false, ReasonRemoving, "%d objects are still being deleted from cluster %s", left.Remaining, w.id)
		w.set(v1beta1.ConditionReady, false, ReasonRemoving, "removing istiod from cluster %s", w.id)
		return ctrl.Result{RequeueAfter: 2 * time.Second}, applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
	}
	if err := r.labelNetwork(cleanCtx, w, ""); err != nil {
		return ctrl.Result{}, err
	}
	kept, remaining, err := r.removeCRDs(cleanCtx, w)
	if err != nil {
		return ctrl.Result{}, err
	}
	if remaining > 0 {
		w.set(v1beta1.ConditionReady, false, ReasonRemoving, "removing Istio's CRDs from cluster %s", w.id)
		return ctrl.Result{RequeueAfter: 2 * time.Second}, applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
	}
	keptNamespace, err := r.deleteOwnNamespace(cleanCtx, w)
	if err != nil {
		return ctrl.Result{}, err
	}
	if keptNamespace != "" {
		kept = append(kept, keptNamespace)
	}
	if len(kept) > 0 {
		if res, wait, err := r.keptForOthers(ctx, w, kept); wait {
			return res, err
		}
	}
	// The copy goes last: until here a lost record can still be given back from it.
	if err := r.deleteRecordCopy(ctx, w.id); err != nil {
		return ctrl.Result{}, err
	}
	r.Applier.Forget(w.id)
	r.watches.forget(ctx, w.remote.GetCache())
	log.Info("removed istiod from cluster")
	r.event(w, corev1.EventTypeNormal, ReasonRemoving, "removed istiod and everything the operator created from cluster %s", w.id)
	return ctrl.Result{}, applyClusterStatus(ctx, r.Local, w.mc, w.id, nil)
}

// keptForOthers reports what the removal left because others' objects need it. While
// the ASMMeshConfig stays, the cluster's entry stays too and says so, and the removal
// looks again every minute, finishing once those objects are gone; naming the cluster in
// the abandon annotation drops the entry and leaves them for good. A deleted
// ASMMeshConfig is not held up: an event says what stays.
func (r *ClusterReconciler) keptForOthers(ctx context.Context, w *clusterWork, kept []string) (ctrl.Result, bool, error) {
	what := strings.Join(kept, "; ")
	if w.mc.DeletionTimestamp != nil {
		r.event(w, corev1.EventTypeWarning, ReasonForeignObjects, "removed istiod from cluster %s but left, because objects the operator did not create need them: %s", w.id, what)
		return ctrl.Result{}, false, nil
	}
	// istiod and the switch are gone: nothing but what is named here is left there.
	if err := r.deleteRecordCopy(ctx, w.id); err != nil {
		return ctrl.Result{}, true, err
	}
	w.status.AppliedHash, w.status.SwitchedAt, w.status.IntermediateCAExpiresAt = "", nil, nil
	w.status.GatewaysRestarted, w.status.ReadyReplicas, w.status.DesiredReplicas = nil, 0, 0
	r.reportOnce(w, ReasonForeignObjects, "removed istiod from cluster %s and gave injection back, but left, because objects the operator did not create "+
		"need them: %s. It deletes them once those objects are gone; name the cluster in the ASMMeshConfig's annotation %s to leave them for good",
		w.id, what, v1beta1.AbandonClustersAnnotation)
	return ctrl.Result{RequeueAfter: time.Minute}, true, applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
}

// withoutCRDs drops the CRD kind from kinds.
func withoutCRDs(kinds []schema.GroupVersionKind) []schema.GroupVersionKind {
	var out []schema.GroupVersionKind
	for _, gvk := range kinds {
		if gvk != mirror.CRDGVK {
			out = append(out, gvk)
		}
	}
	return out
}

// secretsIn lists the kinds the operator keeps only in namespace (controlPlaneOnlyKinds)
// only there, where its identity may list them (docs/remote-permissions.md); other reads
// pass through.
func secretsIn(namespace string, reader client.Reader) client.Reader {
	return namespacedSecrets{Reader: reader, namespace: namespace}
}

type namespacedSecrets struct {
	client.Reader
	namespace string
}

func (n namespacedSecrets) List(ctx context.Context, list client.ObjectList, opts ...client.ListOption) error {
	gvk := list.GetObjectKind().GroupVersionKind()
	for _, obj := range controlPlaneOnlyKinds {
		if kinds, _, err := scheme.Scheme.ObjectKinds(obj); err == nil && len(kinds) == 1 &&
			kinds[0].Group == gvk.Group && kinds[0].Kind+"List" == gvk.Kind {
			opts = append(opts, client.InNamespace(n.namespace))
			break
		}
	}
	return n.Reader.List(ctx, list, opts...)
}

// removalWaits reports a removal that cannot go on yet, and how to give up on a cluster
// that is gone for good.
func (r *ClusterReconciler) removalWaits(ctx context.Context, w *clusterWork, reason, format string, args ...any) error {
	w.set(v1beta1.ConditionReady, false, reason, "removal of istiod from cluster %s waits: %s; if the cluster is gone for good, "+
		"name it in the ASMMeshConfig's annotation %s to stop cleaning up", w.id, fmt.Sprintf(format, args...), v1beta1.AbandonClustersAnnotation)
	return applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
}

// giveUp stops cleaning up a cluster: one no remote secret provides (found false), or
// one the annotation abandons. Its status entry says what was left behind there until
// nobody needs to know: the entry of a cluster abandoned with its remote secret still
// in the mesh stays until the secret goes, and that of a cluster whose secret went stays
// until the annotation names it (or the secret is back, which resumes the removal).
// Deleting the ASMMeshConfig drops every such entry.
func (r *ClusterReconciler) giveUp(ctx context.Context, w *clusterWork, found bool, record *switching.State) (ctrl.Result, error) {
	left := leftBehind(&w.status, record, r.Settings.Namespace, time.Now())
	abandoned, deleting := w.mc.Abandons(w.id), w.mc.DeletionTimestamp != nil
	switch {
	case deleting || nothingLeft(&w.status, record):
	case found && abandoned:
		r.reportOnce(w, ReasonAbandoned, "cluster %s is abandoned (annotation %s): the operator removes nothing there any more; %s. "+
			"Remove its remote secret to drop this entry, or the cluster from the annotation to resume the removal",
			w.id, v1beta1.AbandonClustersAnnotation, left)
		return ctrl.Result{}, applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
	case !abandoned:
		w.set(v1beta1.ConditionConnected, false, ReasonRemoteSecretAbsent, "no remote secret provides cluster %s any more", w.id)
		r.reportOnce(w, ReasonLeftBehind, "no remote secret provides cluster %s any more, so the operator cannot remove anything there; %s. "+
			"Add its remote secret back to finish the removal, or name the cluster in the ASMMeshConfig's annotation %s to drop this entry",
			w.id, left, v1beta1.AbandonClustersAnnotation)
		return ctrl.Result{}, applyClusterStatus(ctx, r.Local, w.mc, w.id, &w.status)
	}
	if !nothingLeft(&w.status, record) {
		logf.FromContext(ctx).Info("forgetting cluster without cleanup", "abandoned", abandoned, "remoteSecret", found)
		r.event(w, corev1.EventTypeWarning, ReasonLeftBehind, "forgot cluster %s without cleaning it up; %s", w.id, left)
	}
	if err := r.deleteRecordCopy(ctx, w.id); err != nil {
		return ctrl.Result{}, err
	}
	r.Applier.Forget(w.id)
	return ctrl.Result{}, applyClusterStatus(ctx, r.Local, w.mc, w.id, nil)
}

// reportOnce sets Ready=False with reason, and records a warning event when the reason
// is new.
func (r *ClusterReconciler) reportOnce(w *clusterWork, reason, format string, args ...any) {
	if c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionReady); c == nil || c.Reason != reason {
		r.event(w, corev1.EventTypeWarning, reason, format, args...)
	}
	w.set(v1beta1.ConditionReady, false, reason, format, args...)
}

// unanswered tells a cluster that did not answer (refused, hung, timed out) from one
// whose API server answered with an error.
func unanswered(err error) bool {
	var status apierrors.APIStatus
	return !errors.As(err, &status) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err)
}
