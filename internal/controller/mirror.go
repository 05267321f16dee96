package controller

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/metrics"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
)

// Reasons of the ConfigMirrored condition.
const (
	ReasonMirrored     = "Mirrored"
	ReasonMirrorFailed = "MirrorFailed"
)

// +kubebuilder:rbac:groups=networking.istio.io;security.istio.io;telemetry.istio.io;extensions.istio.io,resources=*,verbs=get;list;watch

// reconcileMirror makes the cluster hold exactly the mesh's Istio configuration: it
// installs Istio's CRDs where they are missing, applies a copy of every object (writing
// nothing for copies that are already right) and deletes copies whose source is gone.
// A copy edited or deleted in the cluster is seen by the watch and restored.
func (r *ClusterReconciler) reconcileMirror(ctx context.Context, w *clusterWork) error {
	own := ownership(w.id)
	// Changes of the mesh's Istio objects concern every cluster; changes of the copies
	// only this one. Both kinds may appear late, so their watches start when they do.
	if r.LocalCache != nil {
		r.watches.ensure(ctx, r.LocalCache, mirror.Kinds(), allClusters, false)
	}
	defer r.watches.ensure(ctx, w.remote.GetCache(), mirror.Kinds(), w.id, true)
	crds, err := r.missingCRDs(ctx, w)
	if err != nil {
		return r.mirrorFailed(w, err)
	}
	if _, err := r.Applier.Apply(ctx, w.id, w.remote.GetClient(), w.remote.GetAPIReader(), w.remote.GetClient(), own, crds); err != nil {
		return r.mirrorFailed(w, err)
	}

	namespaces := map[string]bool{}
	nsList := &metav1.PartialObjectMetadataList{}
	nsList.SetGroupVersionKind(corev1.SchemeGroupVersion.WithKind("NamespaceList"))
	if err := w.remote.GetAPIReader().List(ctx, nsList); err != nil {
		return r.mirrorFailed(w, err)
	}
	for _, ns := range nsList.Items {
		namespaces[ns.Name] = true
	}
	metrics.MirrorPassStarted(w.id)
	var sources []unstructured.Unstructured
	for _, gvk := range mirror.Kinds() {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := r.Local.List(ctx, list); err != nil {
			if meta.IsNoMatchError(err) {
				continue // the mesh cluster does not have this kind
			}
			return r.mirrorFailed(w, fmt.Errorf("reading %s in the mesh cluster: %w", gvk.Kind, err))
		}
		sources = append(sources, list.Items...)
	}
	copies, skipped := mirror.Copies(sources, namespaces, own.Labels)
	// The copies are read straight from the API server (the CRDs may be minutes old, and
	// a cache would first have to discover them), in one List per kind rather than one
	// read per copy: a pass crosses the link to a far cluster once per kind.
	live, err := apply.TakeSnapshot(ctx, w.remote.GetAPIReader(), mirror.Kinds())
	if err != nil {
		return r.mirrorFailed(w, err)
	}
	applied, err := r.Applier.Apply(ctx, w.id, live, nil, w.remote.GetClient(), own, copies)
	metrics.CountMirrorWrites(w.id, applied.Created, applied.Applied-applied.Created, 0)
	if err != nil {
		return r.mirrorFailed(w, err)
	}
	pruned, err := r.Applier.Prune(ctx, w.id, live, w.remote.GetClient(), own, mirror.Kinds(), copies)
	metrics.CountMirrorWrites(w.id, 0, 0, pruned.Deleted)
	if err != nil {
		return r.mirrorFailed(w, err)
	}
	metrics.MirrorSynced(w.id)
	w.status.MirroredObjects = int32(len(copies))
	if len(skipped) > 0 {
		w.set(v1beta1.ConditionConfigMirrored, false, ReasonMirrorFailed,
			"%d Istio objects are mirrored; %d are not because their namespace does not exist in cluster %s: %s",
			len(copies), len(skipped), w.id, mirror.Summary(skipped))
		return nil
	}
	w.set(v1beta1.ConditionConfigMirrored, true, ReasonMirrored, "%d Istio objects of the mesh cluster are mirrored into cluster %s", len(copies), w.id)
	return nil
}

func (r *ClusterReconciler) mirrorFailed(w *clusterWork, err error) error {
	w.set(v1beta1.ConditionConfigMirrored, false, ReasonMirrorFailed, "mirroring Istio configuration into cluster %s failed: %s", w.id, errorSummary(err))
	return fmt.Errorf("cluster %s: mirroring: %w", w.id, err)
}

// missingCRDs are Istio's CRDs the cluster lacks (or that the operator installed
// there), labelled as the operator's so that switching back removes them. CRDs someone
// else installed are used as they are.
func (r *ClusterReconciler) missingCRDs(ctx context.Context, w *clusterWork) ([]client.Object, error) {
	own := ownership(w.id)
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(mirror.CRDGVK.GroupVersion().WithKind("CustomResourceDefinitionList"))
	if err := w.remote.GetAPIReader().List(ctx, list); err != nil {
		return nil, err
	}
	foreign := map[string]bool{}
	for _, crd := range list.Items {
		if crd.Labels[own.ManagedByKey] != own.ManagedByValue {
			foreign[crd.Name] = true
		}
	}
	var out []client.Object
	for _, crd := range mirror.CRDs() {
		if foreign[crd.GetName()] {
			continue
		}
		labels := crd.GetLabels()
		if labels == nil {
			labels = map[string]string{}
		}
		for k, v := range own.Labels {
			labels[k] = v
		}
		crd.SetLabels(labels)
		out = append(out, crd)
	}
	return out, nil
}

// mirrorKinds are the kinds the mirror owns in a cluster, copies before CRDs, so that
// cleanup deletes the copies before the definitions they need.
func mirrorKinds() []schema.GroupVersionKind {
	return append(mirror.Kinds(), mirror.CRDGVK)
}
