package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	logf "sigs.k8s.io/controller-runtime/pkg/log"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// Timeouts that keep one slow cluster from holding a worker.
const (
	probeTimeout = 10 * time.Second
	// applyTimeout bounds each phase of a reconcile that talks to the cluster (the
	// mirror sizes its own deadline to its work).
	applyTimeout = 60 * time.Second
	// resyncInterval re-checks a healthy cluster, so a connection that broke while
	// nothing changed is still reported.
	resyncInterval = 5 * time.Minute
)

// ClusterReconciler brings one data-plane cluster in line with its entry of the
// ASMMeshConfig: requests are keyed by cluster ID, so clusters progress independently.
type ClusterReconciler struct {
	Local    client.Client
	Scheme   *runtime.Scheme
	Clusters *remotecluster.Provider
	Applier  *apply.Applier
	Recorder events.EventRecorder
	Settings render.Settings
	// LocalCache is the mesh cluster's cache, where Istio's kinds are watched.
	LocalCache cache.Cache
	// LocalReader reads the mesh cluster directly, for the few objects not cached
	// (the mesh CA).
	LocalReader client.Reader

	watches *kindWatches
	repairs *repairs
	// passReads are the live reads each cluster's last pass made (internal/passread).
	passReads sync.Map
}

// clusterWork is what one reconcile of one cluster knows.
type clusterWork struct {
	id     string
	mc     *v1beta1.ASMMeshConfig
	status v1beta1.ClusterStatus
	remote cluster.Cluster
}

func (w *clusterWork) set(typ string, ok bool, reason, format string, args ...any) {
	setCondition(&w.status.Conditions, w.mc.Generation, typ, ok, reason, format, args...)
	countApplyError(w.id, typ, ok, reason)
}

// Reconcile implements the per-cluster loop: connect, render, apply, prune, report.
func (r *ClusterReconciler) Reconcile(ctx context.Context, req mcreconcile.Request) (ctrl.Result, error) {
	id := string(req.ClusterName)
	if id == "" {
		return ctrl.Result{}, nil
	}
	if req.Name == repairRequestName {
		return r.reconcileRepair(ctx, id)
	}
	if !r.repairs.begin(id) {
		return ctrl.Result{RequeueAfter: repairRetry}, nil // a repair of the cluster runs
	}
	defer r.repairs.end(id)
	r.repairs.passBegins(id)

	log := logf.FromContext(ctx).WithValues("cluster", id)
	ctx = logf.IntoContext(ctx, log)

	mc := &v1beta1.ASMMeshConfig{}
	// From the API server, not the cache: this reconcile's status starts from the last
	// one written, and a cache that has not seen that write yet would have it written
	// back older (appliedHash, switchedAt and Switched lost).
	if err := r.LocalReader.Get(ctx, types.NamespacedName{Name: v1beta1.DefaultName}, mc); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	w := &clusterWork{id: id, mc: mc, status: v1beta1.ClusterStatus{ClusterID: id, ObservedGeneration: mc.Generation}}
	if prev := clusterStatus(mc, id); prev != nil {
		w.status = *prev.DeepCopy()
		w.status.ObservedGeneration = mc.Generation
	}
	_, wanted := mc.Spec.ExternalIstiodConfigurations[id]
	if !wanted || mc.DeletionTimestamp != nil {
		if prev := clusterStatus(mc, id); prev != nil && refusedReason(prev) != "" {
			return ctrl.Result{}, r.forgetRefused(ctx, w, refusedReason(prev))
		}
		return r.reconcileRemoval(ctx, w)
	}
	result, err := r.reconcileInstall(ctx, w)
	r.setReady(w)
	if serr := applyClusterStatus(ctx, r.Local, mc, id, &w.status); serr != nil {
		return ctrl.Result{}, errors.Join(err, fmt.Errorf("writing status of cluster %s: %w", id, serr))
	}
	return result, err
}

func (r *ClusterReconciler) setReady(w *clusterWork) {
	for _, typ := range []string{v1beta1.ConditionConnected, v1beta1.ConditionApplied, v1beta1.ConditionConfigMirrored,
		v1beta1.ConditionIstiodReady, v1beta1.ConditionSwitched} {
		c := meta.FindStatusCondition(w.status.Conditions, typ)
		if c == nil {
			w.set(v1beta1.ConditionReady, false, ReasonPending, "waiting for %s", typ)
			return
		}
		if c.Status != metav1.ConditionTrue {
			w.set(v1beta1.ConditionReady, false, c.Reason, "%s", c.Message)
			return
		}
	}
	w.set(v1beta1.ConditionReady, true, ReasonReady, "istiod is ready with %d/%d replicas", w.status.ReadyReplicas, w.status.DesiredReplicas)
}

// connect finds the cluster's client and proves its API server answers.
func (r *ClusterReconciler) connect(ctx context.Context, w *clusterWork) (ctrl.Result, error) {
	ns := r.Settings.Namespace
	if refused, err := r.refuseMeshID(ctx, w); refused || err != nil {
		return ctrl.Result{RequeueAfter: time.Minute}, err
	}
	state, found, err := r.Clusters.Lookup(ctx, w.id)
	switch {
	case err != nil:
		return ctrl.Result{}, err
	case found && state.Connecting:
		// Keep the last status: this is a moment, not news (the operator just started).
		return ctrl.Result{RequeueAfter: time.Second}, nil
	case !found:
		w.set(v1beta1.ConditionConnected, false, ReasonRemoteSecretAbsent,
			"no Istio remote secret (label istio/multiCluster=true) in namespace %s has a data key %q; add the cluster to the mesh, for example with istioctl create-remote-secret", ns, w.id)
		r.event(w, corev1.EventTypeWarning, ReasonRemoteSecretAbsent, "no remote secret provides cluster %s", w.id)
		return ctrl.Result{}, nil // a remote secret event wakes this cluster up
	case state.Problem != "":
		w.set(v1beta1.ConditionConnected, false, ReasonInvalidKubeconfig, "%s; fix the remote secret", state.Problem)
		r.event(w, corev1.EventTypeWarning, ReasonInvalidKubeconfig, "remote secret %s has an unusable kubeconfig for cluster %s", state.Secret, w.id)
		return ctrl.Result{}, nil
	case state.ConnectError != nil:
		// The provider retries on its own and wakes the cluster once it is connected.
		r.connectFailed(w, state.Secret, state.ConnectError, "the operator keeps retrying, at most a minute apart")
		return ctrl.Result{RequeueAfter: time.Minute}, nil
	}
	w.remote = state.Cluster
	probeCtx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	err = w.remote.GetAPIReader().Get(probeCtx, types.NamespacedName{Name: ns}, &metav1.PartialObjectMetadata{
		TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"}})
	if err == nil || apierrors.IsNotFound(err) {
		if refused, err := r.refuseIdentity(ctx, w, state); refused || err != nil {
			w.remote = nil // nothing is done in a refused cluster
			return ctrl.Result{RequeueAfter: refusedRetry(w)}, err
		}
		if !meta.IsStatusConditionTrue(w.status.Conditions, v1beta1.ConditionConnected) {
			r.event(w, corev1.EventTypeNormal, ReasonConnected, "connected to cluster %s through remote secret %s", w.id, state.Secret)
		}
		w.set(v1beta1.ConditionConnected, true, ReasonConnected, "the API server of cluster %s answers (remote secret %s)", w.id, state.Secret)
		return ctrl.Result{}, nil
	}
	w.remote = nil
	if apierrors.IsUnauthorized(err) && r.Clusters.Reauthenticate(ctx, w.id) {
		// A client built again reads its credentials again; the provider wakes the
		// cluster when the new one is connected.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	r.connectFailed(w, state.Secret, err, "retrying with backoff")
	return ctrl.Result{}, fmt.Errorf("cluster %s: %w", w.id, err)
}

// connectFailed reports why the cluster's API server cannot be used, with the advice
// that fits: a link that is down is not a bad kubeconfig.
func (r *ClusterReconciler) connectFailed(w *clusterWork, secret string, err error, retry string) {
	ns := r.Settings.Namespace
	reason := remotecluster.ConnectFailure(err)
	switch reason {
	case remotecluster.FailureUnauthorized:
		w.set(v1beta1.ConditionConnected, false, ReasonUnauthorized,
			"the API server of cluster %s refused the credentials in remote secret %s (HTTP 401: the token expired, was rotated or revoked); "+
				"create the remote secret again, for example with istioctl create-remote-secret", w.id, secret)
	case remotecluster.FailureForbidden:
		w.set(v1beta1.ConditionConnected, false, ReasonForbidden,
			"the kubeconfig in remote secret %s is not allowed to read namespace %s in cluster %s; grant it the permissions in docs/remote-permissions.md", secret, ns, w.id)
	default:
		w.set(v1beta1.ConditionConnected, false, ReasonUnreachable,
			"cannot reach the API server of cluster %s: %s; %s", w.id, remotecluster.DescribeFailure(err), retry)
	}
	r.event(w, corev1.EventTypeWarning, reason, "cannot connect to cluster %s", w.id)
}

// conflictingSettings explains why the spec must not get remote control planes, or "".
func conflictingSettings(spec v1beta1.ASMMeshConfigSpec) string {
	if spec.UseDataPlaneKubeAPIForIstioResources && len(spec.ExternalIstiodConfigurations) > 0 {
		return "spec.useDataPlaneKubeAPIForIstioResources is true: Istio resources written in data-plane clusters " +
			"conflict with remote control planes, which read them from the mesh cluster; set it to false, nothing is applied until then"
	}
	return ""
}

// applyFailed reports why istiod could not be applied. A same-named object the
// operator does not own needs a person and returns nil; the rest is retried.
func (r *ClusterReconciler) applyFailed(w *clusterWork, err error) error {
	var notOwned *apply.NotOwnedError
	switch {
	case errors.As(err, &notOwned):
		w.set(v1beta1.ConditionApplied, false, ReasonNotOwned, "%v", err)
		r.event(w, corev1.EventTypeWarning, ReasonNotOwned, "%v", err)
		return nil
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err) || apierrors.IsBadRequest(err):
		w.set(v1beta1.ConditionApplied, false, ReasonApplyRejected, "the API server of cluster %s refused: %s", w.id, errorSummary(err))
		r.event(w, corev1.EventTypeWarning, ReasonApplyRejected, "cluster %s refused istiod: %s", w.id, errorSummary(err))
	default:
		w.set(v1beta1.ConditionApplied, false, ReasonUnreachable, "applying to cluster %s failed; retrying with backoff: %s", w.id, errorSummary(err))
	}
	return fmt.Errorf("cluster %s: %w", w.id, err)
}

// observeIstiod reads the istiod Deployment from the cluster's cache.
func (r *ClusterReconciler) observeIstiod(ctx context.Context, w *clusterWork) {
	dep := &appsv1.Deployment{}
	err := w.remote.GetClient().Get(ctx, types.NamespacedName{Namespace: r.Settings.Namespace, Name: "istiod"}, dep)
	if err != nil {
		w.set(v1beta1.ConditionIstiodReady, false, ReasonProgressing, "the istiod Deployment is not visible yet")
		return
	}
	w.status.ReadyReplicas = dep.Status.ReadyReplicas
	desired := ptrOr(dep.Spec.Replicas, 1)
	available := dep.Status.ObservedGeneration >= dep.Generation &&
		dep.Status.UpdatedReplicas >= desired && dep.Status.AvailableReplicas >= desired
	if available {
		w.set(v1beta1.ConditionIstiodReady, true, ReasonAvailable, "istiod has %d/%d replicas available", dep.Status.AvailableReplicas, desired)
		return
	}
	w.set(v1beta1.ConditionIstiodReady, false, ReasonProgressing,
		"istiod has %d/%d replicas ready; if this lasts, check the istiod pods in cluster %s (kubectl -n %s describe deploy istiod)",
		dep.Status.ReadyReplicas, desired, w.id, r.Settings.Namespace)
}

func (r *ClusterReconciler) event(w *clusterWork, eventType, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(w.mc, nil, eventType, reason, "Reconcile", format, args...)
	}
}

// allOwnedKinds is every kind the operator creates in a cluster: the mirror's copies
// and CRDs first, then istiod.
func allOwnedKinds() []schema.GroupVersionKind {
	return append(append(mirrorKinds(), secretGVK), render.OwnedKinds...)
}

func ownership(id string) apply.Ownership {
	return apply.Ownership{
		Labels:       map[string]string{render.ManagedByLabel: render.ManagedByValue, render.ClusterIDLabel: id},
		ManagedByKey: render.ManagedByLabel, ManagedByValue: render.ManagedByValue,
	}
}

func ptrOr(p *int32, def int32) int32 {
	if p == nil {
		return def
	}
	return *p
}

// errorSummary shortens an error for a condition message. API errors carry the API
// server's own words, which name objects and fields, never credentials; a body that is
// not a Kubernetes status is not repeated.
func errorSummary(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return remotecluster.StatusMessage(status)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300] + "..."
	}
	return msg
}
