package controller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// Reasons of a cluster the operator refuses to work on, on Connected.
const (
	// ReasonMeshClusterEntry: the entry names the mesh cluster itself, by its cluster ID
	// or through a kubeconfig that reaches the mesh cluster's API server.
	ReasonMeshClusterEntry = "MeshClusterEntry"
	// ReasonDuplicateCluster: the kubeconfigs of two cluster IDs reach one API server.
	ReasonDuplicateCluster = "DuplicateCluster"
)

// The mesh cluster's identity, to tell it from a data-plane cluster reached through a
// remote secret: its kube-system Namespace, and only that one.
// +kubebuilder:rbac:groups="",resources=namespaces,resourceNames=kube-system,verbs=get

// istioDefaultClusterID is the CLUSTER_ID of an istiod that sets none
// (pilot/pkg/features/pilot.go, constants.DefaultClusterName, Istio 1.28).
const istioDefaultClusterID = "Kubernetes"

// meshClusterIDs are the cluster IDs of the mesh control plane: the CLUSTER_ID of each
// mesh istiod (istiod[-<revision>] in the control plane namespace), which is how istiod
// itself knows its cluster (Istio's chart sets it from global.multiCluster.clusterName)
// and which its remote secret controller refuses to take from a remote secret
// (pkg/kube/multicluster/secretcontroller.go, "would overwrite the config cluster").
func (r *ClusterReconciler) meshClusterIDs(ctx context.Context) (map[string]string, error) {
	list := &appsv1.DeploymentList{}
	if err := r.Local.List(ctx, list, client.InNamespace(r.Settings.Namespace)); err != nil {
		return nil, fmt.Errorf("listing the mesh istiod Deployments: %w", err)
	}
	ids := map[string]string{}
	for _, dep := range list.Items {
		if dep.Name != "istiod" && !strings.HasPrefix(dep.Name, "istiod-") {
			continue
		}
		for _, c := range dep.Spec.Template.Spec.Containers {
			if c.Name != istiodContainer {
				continue
			}
			id := istioDefaultClusterID
			for _, env := range c.Env {
				if env.Name == "CLUSTER_ID" && env.ValueFrom == nil {
					id = env.Value
				}
			}
			ids[id] = dep.Namespace + "/" + dep.Name
		}
	}
	return ids, nil
}

// refuseMeshID refuses an entry named like the mesh cluster: nothing of the operator's
// belongs in the cluster the mesh control plane runs in.
func (r *ClusterReconciler) refuseMeshID(ctx context.Context, w *clusterWork) (bool, error) {
	ids, err := r.meshClusterIDs(ctx)
	if err != nil {
		return false, err
	}
	istiod, mine := ids[w.id]
	if !mine {
		return false, nil
	}
	r.refuse(w, ReasonMeshClusterEntry,
		"cluster ID %s is the mesh cluster's own (CLUSTER_ID of the mesh istiod %s): the mesh control plane already runs there, "+
			"and the operator does nothing in it; remove the entry %s from spec.externalIstiodConfigurations", w.id, istiod, w.id)
	return true, nil
}

// refuseIdentity refuses a connected cluster whose API server is the mesh cluster's,
// or that of another cluster ID the operator works on, by the identity the provider
// read (the kube-system Namespace UID), not by URL.
func (r *ClusterReconciler) refuseIdentity(ctx context.Context, w *clusterWork, state remotecluster.State) (bool, error) {
	if state.UID == "" {
		return false, nil // unknown: the API server keeps its kube-system Namespace from the operator
	}
	meshUID, err := r.Clusters.MeshUID(ctx)
	if err != nil {
		return false, fmt.Errorf("reading the mesh cluster's identity: %w", err)
	}
	if state.UID == meshUID {
		r.refuse(w, ReasonMeshClusterEntry,
			"the kubeconfig for cluster %s in remote secret %s reaches the mesh cluster's own API server (kube-system Namespace UID %s): "+
				"the mesh control plane already runs there, and the operator does nothing in it; remove the entry %s, or fix the remote secret",
			w.id, state.Secret, state.UID, w.id)
		return true, nil
	}
	other := r.sameServerKeeper(ctx, w, state)
	if other != "" {
		r.refuse(w, ReasonDuplicateCluster,
			"the kubeconfig for cluster %s in remote secret %s reaches the same API server as cluster %s (kube-system Namespace UID %s): "+
				"one API server has one cluster ID, and the operator works on it as %s only; remove the entry %s, or fix the remote secret",
			w.id, state.Secret, other, state.UID, other, w.id)
		return true, nil
	}
	return false, nil
}

// sameServerKeeper is the other cluster ID, among the entries and the clusters still
// being removed, that reaches the API server of mine and keeps it; "" when w keeps it.
// The one the operator already works in keeps it (it has applied istiod or switched),
// so a second ID never takes turns with it. Between two that both work in (left so by
// an older operator), the first by name. Between two new ones, the first the provider
// connected: when one of them goes ahead the other is not connected yet, or it is
// and came second, so two new IDs never both go ahead, and none waits for another
// cluster that is slow to connect, or hung.
func (r *ClusterReconciler) sameServerKeeper(ctx context.Context, w *clusterWork, mine remotecluster.State) string {
	ids := []string{}
	for id := range w.mc.Spec.ExternalIstiodConfigurations {
		ids = append(ids, id)
	}
	for _, cs := range w.mc.Status.Clusters {
		ids = append(ids, cs.ClusterID)
	}
	slices.Sort(ids)
	worksHere := worksIn(w.mc, w.id)
	for _, other := range slices.Compact(ids) {
		if other == w.id {
			continue
		}
		state, found, err := r.Clusters.Lookup(ctx, other)
		if err != nil || !found || state.Cluster == nil || state.UID != mine.UID {
			continue
		}
		theirs := worksIn(w.mc, other)
		switch {
		case theirs != worksHere:
			if theirs {
				return other
			}
		case theirs:
			if other < w.id {
				return other
			}
		case state.FirstConnected < mine.FirstConnected:
			return other
		}
	}
	return ""
}

// worksIn reports whether the operator has put istiod in the cluster or switched it.
func worksIn(mc *v1beta1.ASMMeshConfig, id string) bool {
	cs := clusterStatus(mc, id)
	return cs != nil && (cs.AppliedHash != "" || cs.SwitchedAt != nil)
}

func (r *ClusterReconciler) refuse(w *clusterWork, reason, format string, args ...any) {
	if c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionConnected); c == nil || c.Reason != reason {
		r.event(w, corev1.EventTypeWarning, reason, format, args...)
	}
	w.set(v1beta1.ConditionConnected, false, reason, format, args...)
}

// refusedReason is the reason the cluster was last refused, or "".
func refusedReason(cs *v1beta1.ClusterStatus) string {
	c := meta.FindStatusCondition(cs.Conditions, v1beta1.ConditionConnected)
	if c != nil && c.Status == metav1.ConditionFalse && (c.Reason == ReasonMeshClusterEntry || c.Reason == ReasonDuplicateCluster) {
		return c.Reason
	}
	return ""
}

// forgetRefused drops the status entry of a refused cluster whose entry is gone,
// without touching the cluster: the operator did nothing there as this cluster ID, and
// a removal would undo what it does there under the ID that kept the cluster.
func (r *ClusterReconciler) forgetRefused(ctx context.Context, w *clusterWork, reason string) error {
	left := ""
	if w.status.AppliedHash != "" {
		left = fmt.Sprintf("; what it applied there as %s before (labelled %s=%s) is left as it is", w.id, render.ClusterIDLabel, w.id)
	}
	r.event(w, corev1.EventTypeNormal, reason, "forgot the refused cluster %s without touching it%s", w.id, left)
	r.Applier.Forget(w.id)
	return applyClusterStatus(ctx, r.Local, w.mc, w.id, nil)
}

// refusedRetry is when to look at a refused cluster again: soon while the refusal
// waits for another cluster's first connection, else now and then (a refusal ends
// with a change of the spec or of a remote secret, or with the removal of the ID that
// keeps the API server).
func refusedRetry(w *clusterWork) time.Duration {
	if c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionConnected); c != nil && c.Status == metav1.ConditionFalse &&
		(c.Reason == ReasonMeshClusterEntry || c.Reason == ReasonDuplicateCluster) {
		return time.Minute
	}
	return time.Second
}
