package controller

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	logf "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
)

// Reasons of the ConfigMirrored condition, and of the mirror's events.
const (
	ReasonMirrored     = "Mirrored"
	ReasonMirrorFailed = "MirrorFailed"
	// ReasonCopiesRefused: the cluster refused some copies, or holds same-named objects
	// the operator did not create; every other copy is mirrored.
	ReasonCopiesRefused = "CopiesRefused"
	// ReasonNamespaceMissing (event): objects are not mirrored because their namespace
	// does not exist in the cluster.
	ReasonNamespaceMissing = "NamespaceMissing"
	// ReasonPruneHeldBack (event): more copies lost their source than the cluster's
	// deletion budget allows at once.
	ReasonPruneHeldBack = "PruneHeldBack"
)

// How a mirror pass spends its time. The writes get a deadline sized to their number:
// generous, since the link's round trip and the cluster's rate limit
// (--remote-api-qps) set the pace. A pass cut short loses nothing: what it wrote is not written again.
const (
	mirrorWorkers        = 16
	mirrorReadTimeout    = 30 * time.Second
	mirrorWriteBase      = 30 * time.Second
	mirrorWritePerObject = 100 * time.Millisecond
	mirrorWriteMax       = 10 * time.Minute
)

func mirrorWriteTimeout(writes int) time.Duration {
	return min(mirrorWriteBase+time.Duration(writes)*mirrorWritePerObject, mirrorWriteMax)
}

// +kubebuilder:rbac:groups=networking.istio.io;security.istio.io;telemetry.istio.io;extensions.istio.io,resources=*,verbs=get;list;watch

// reconcileMirror makes the cluster hold the mesh's Istio configuration: it installs
// Istio's CRDs where they are missing, applies a copy of every object whose namespace
// the cluster has (writing nothing for copies that are already right) and deletes
// copies whose source is gone. Each copy succeeds or fails on its own; failures are
// named in the ConfigMirrored condition. It returns an error, to be retried with
// backoff, only when the pass could not finish; a copy the cluster refuses is
// reported, not retried in a hurry. A copy edited or deleted in the cluster is seen by
// the watch and restored.
func (r *ClusterReconciler) reconcileMirror(ctx context.Context, w *clusterWork) error {
	own := ownership(w.id)
	// Changes of the mesh's Istio objects concern every cluster; changes of the copies
	// only this one. Both kinds may appear late, so their watches start when they do.
	if r.LocalCache != nil {
		r.watches.ensure(ctx, r.LocalCache, mirror.Kinds(), allClusters, false)
	}
	defer r.watches.ensure(ctx, w.remote.GetCache(), mirror.Kinds(), w.id, true)
	if err := r.installCRDs(ctx, w); err != nil {
		return r.mirrorFailed(w, err)
	}

	readCtx, cancelRead := context.WithTimeout(ctx, mirrorReadTimeout)
	defer cancelRead()
	namespaces, err := remoteNamespaces(readCtx, w)
	if err != nil {
		return r.mirrorFailed(w, err)
	}
	metrics.MirrorPassStarted(w.id)
	sources, read, unread := r.meshSources(readCtx)
	copies, skipped := mirror.Place(sources, namespaces, own.Labels)
	// The copies are read straight from the API server (the CRDs may be minutes old, and
	// a cache would first have to discover them), in one metadata-only List per kind
	// rather than one read per copy: a pass crosses the link to a far cluster once per
	// kind, and the hash annotation on each copy says whether it is right.
	live, err := apply.TakeSnapshot(readCtx, w.remote.GetAPIReader(), w.remote.GetRESTMapper(), mirror.Kinds())
	if err != nil {
		return r.mirrorFailed(w, err)
	}
	plan, err := r.Applier.PlanEach(w.id, live, own, copies)
	if err != nil {
		return r.mirrorFailed(w, err)
	}
	// Only kinds read completely from the mesh cluster are pruned: a kind that could
	// not be read must not look empty.
	stale := apply.Stale(live, own, read, copies)

	writeCtx, cancelWrite := context.WithTimeout(ctx, mirrorWriteTimeout(plan.Writes()+min(len(stale), apply.DeleteBurst)))
	defer cancelWrite()
	applied := r.Applier.ApplyEach(writeCtx, w.remote.GetClient(), plan, mirrorWorkers)
	pruned := r.Applier.DeleteEach(writeCtx, w.id, w.remote.GetClient(), stale, mirrorWorkers)
	metrics.CountMirrorWrites(w.id, applied.Created, applied.Updated, pruned.Deleted)

	pass := &mirrorPass{cluster: w.id, wanted: len(copies), plan: plan, applied: applied, pruned: pruned,
		skipped: skipped, unread: unread}
	logPass(ctx, pass)
	return r.reportMirror(w, pass)
}

// installCRDs installs Istio's CRDs the cluster lacks and keeps those the operator
// installed up to date, labelled as the operator's so that switching back removes
// them. CRDs someone else installed are used as they are.
func (r *ClusterReconciler) installCRDs(ctx context.Context, w *clusterWork) error {
	own := ownership(w.id)
	readCtx, cancel := context.WithTimeout(ctx, mirrorReadTimeout)
	defer cancel()
	live, err := apply.TakeSnapshot(readCtx, w.remote.GetAPIReader(), w.remote.GetRESTMapper(), []schema.GroupVersionKind{mirror.CRDGVK})
	if err != nil {
		return err
	}
	var crds []client.Object
	for _, crd := range mirror.CRDs() {
		labels := crd.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		for k, v := range own.Labels {
			labels[k] = v
		}
		crd.SetLabels(labels)
		crds = append(crds, crd)
	}
	plan, err := r.Applier.PlanEach(w.id, live, own, crds) // someone else's CRDs come back as NotOwned: left alone
	if err != nil {
		return err
	}
	writeCtx, cancelWrite := context.WithTimeout(ctx, mirrorWriteTimeout(plan.Writes()))
	defer cancelWrite()
	res := r.Applier.ApplyEach(writeCtx, w.remote.GetClient(), plan, mirrorWorkers)
	var errs []error
	for _, f := range res.Failed {
		errs = append(errs, f)
	}
	if res.NotSent > 0 {
		errs = append(errs, fmt.Errorf("%d of Istio's CRDs not installed in time", res.NotSent))
	}
	return errors.Join(errs...)
}

// remoteNamespaces are the names of the cluster's namespaces.
func remoteNamespaces(ctx context.Context, w *clusterWork) (map[string]bool, error) {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := w.remote.GetAPIReader().List(ctx, list); err != nil {
		return nil, err
	}
	namespaces := map[string]bool{}
	for _, ns := range list.Items {
		namespaces[ns.Name] = true
	}
	return namespaces, nil
}

// meshSources lists the mesh's Istio objects from the mesh cluster's cache, which
// answers only once it has synced a kind. read are the kinds it listed; unread those
// it could not, with the error. A kind the mesh cluster does not serve is neither.
func (r *ClusterReconciler) meshSources(ctx context.Context) (sources []unstructured.Unstructured, read []schema.GroupVersionKind, unread map[string]error) {
	unread = map[string]error{}
	for _, gvk := range mirror.Kinds() {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := r.Local.List(ctx, list); err != nil {
			if !meta.IsNoMatchError(err) {
				unread[gvk.Kind] = err
			}
			continue
		}
		read = append(read, gvk)
		sources = append(sources, list.Items...)
	}
	return sources, read, unread
}

func logPass(ctx context.Context, p *mirrorPass) {
	if p.applied.Created+p.applied.Updated+p.pruned.Deleted+len(p.applied.Failed)+len(p.pruned.Failed)+p.pruned.HeldBack == 0 {
		return // a resync that found everything right says nothing
	}
	logf.FromContext(ctx).Info("mirrored Istio configuration", "created", p.applied.Created, "updated", p.applied.Updated,
		"unchanged", p.plan.Unchanged, "deleted", p.pruned.Deleted, "heldBack", p.pruned.HeldBack,
		"failed", len(p.applied.Failed)+len(p.pruned.Failed), "notSent", p.applied.NotSent+p.pruned.NotSent)
}

func (r *ClusterReconciler) mirrorFailed(w *clusterWork, err error) error {
	w.set(v1beta1.ConditionConfigMirrored, false, ReasonMirrorFailed, "mirroring Istio configuration into cluster %s failed; retrying with backoff: %s", w.id, errorSummary(err))
	return fmt.Errorf("cluster %s: mirroring: %w", w.id, err)
}

// mirrorKinds are the kinds the mirror owns in a cluster, copies before CRDs, so that
// cleanup deletes the copies before the definitions they need.
func mirrorKinds() []schema.GroupVersionKind {
	return append(mirror.Kinds(), mirror.CRDGVK)
}
