package controller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/apply"
)

// ensureNamespace creates the control plane namespace when the cluster lacks it, and
// marks it as the operator's so that switching back removes it again.
func (r *ClusterReconciler) ensureNamespace(ctx context.Context, w *clusterWork) error {
	ns := &corev1.Namespace{}
	err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Name: r.Settings.Namespace}, ns)
	if !apierrors.IsNotFound(err) {
		return err
	}
	ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Settings.Namespace, Labels: ownership(w.id).Labels}}
	return client.IgnoreAlreadyExists(w.remote.GetClient().Create(ctx, ns, client.FieldOwner(apply.FieldOwner)))
}

// networkFieldOwner owns only the network label of the control plane namespace.
const networkFieldOwner = "remote-istiod-operator-network"

// labelNetwork puts the cluster's network where istiod reads it, the
// topology.istio.io/network label of its namespace, with a field manager that owns that
// label alone; "" gives the label up again. A label someone else set to another value
// is left alone and reported.
func (r *ClusterReconciler) labelNetwork(ctx context.Context, w *clusterWork, network string) error {
	const key = "topology.istio.io/network"
	ns := &corev1.Namespace{}
	if err := w.remote.GetAPIReader().Get(ctx, types.NamespacedName{Name: r.Settings.Namespace}, ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	ours := false
	for _, f := range ns.ManagedFields {
		ours = ours || f.Manager == networkFieldOwner
	}
	if current, set := ns.Labels[key]; network != "" && set && current != network && !ours {
		return &apply.NotOwnedError{Kind: "Namespace label " + key + "=" + current + " on", Name: ns.Name}
	}
	if network == "" && !ours {
		return nil
	}
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind("Namespace")
	u.SetName(ns.Name)
	if network != "" {
		if ns.Labels[key] == network && ours {
			return nil
		}
		u.SetLabels(map[string]string{key: network})
	}
	return w.remote.GetClient().Apply(ctx, client.ApplyConfigurationFromUnstructured(u), client.FieldOwner(networkFieldOwner), client.ForceOwnership)
}
