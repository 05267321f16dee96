package controller

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/meshfleet/remote-istiod-operator/internal/access"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// Lifetime of the reader tokens in distributed remote secrets; they are re-issued
// after half of it.
const readerTokenLifetime = 24 * time.Hour

var (
	secretGVK  = corev1.SchemeGroupVersion.WithKind("Secret")
	readerGVKs = []schema.GroupVersionKind{
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"},
		corev1.SchemeGroupVersion.WithKind("ServiceAccount"),
	}
)

func readerOwnership(reader string) apply.Ownership {
	return apply.Ownership{
		Labels:       map[string]string{render.ManagedByLabel: render.ManagedByValue, access.ReaderForLabel: reader},
		ManagedByKey: render.ManagedByLabel, ManagedByValue: render.ManagedByValue,
	}
}

// reconcileAccess gives the cluster's istiod, when its entry asks for mutual access, a
// remote secret for every other cluster of the mesh, each with a reader identity scoped
// to Istio's reader role there; otherwise it removes those identities. It returns the
// remote secrets to apply in the cluster (pruning removes the others).
func (r *ClusterReconciler) reconcileAccess(ctx context.Context, w *clusterWork, enabled bool) ([]client.Object, error) {
	if !enabled {
		// Grants are revoked before the secrets that use them are pruned, so a cluster
		// that holds no distributed secret has no grants anywhere: nothing to ask the
		// other clusters, and one broken cluster cannot hold up the others.
		held, err := r.holdsDistributedSecrets(ctx, w)
		if err != nil || !held {
			return nil, err
		}
	}
	var secrets []client.Object
	for _, other := range r.Clusters.Engaged() {
		if other == w.id {
			continue
		}
		state, found, err := r.Clusters.Lookup(ctx, other)
		if err != nil || !found || state.Cluster == nil {
			continue // reported on that cluster's own entry, if it has one
		}
		otherCtx, cancel := context.WithTimeout(ctx, probeTimeout)
		if !enabled {
			err := r.revokeReader(otherCtx, w.id, other, state)
			cancel()
			if err != nil {
				return nil, fmt.Errorf("revoking mutual access in cluster %s: %w", other, err)
			}
			continue
		}
		secret, err := r.grantReader(otherCtx, w, other, state)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("mutual access with cluster %s: %w", other, err)
		}
		secrets = append(secrets, secret)
	}
	return secrets, nil
}

// holdsDistributedSecrets reports whether the operator gave the cluster's istiod remote
// secrets for other clusters.
func (r *ClusterReconciler) holdsDistributedSecrets(ctx context.Context, w *clusterWork) (bool, error) {
	if w.remote == nil {
		return false, nil
	}
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(secretGVK.GroupVersion().WithKind("SecretList"))
	if err := w.remote.GetClient().List(ctx, list, client.InNamespace(r.Settings.Namespace),
		client.MatchingLabels(ownership(w.id).Labels), client.HasLabels{remotecluster.RemoteSecretLabel}); err != nil {
		return false, err
	}
	return len(list.Items) > 0, nil
}

// grantReader makes sure the reader identity exists in cluster `other` and returns the
// remote secret for it, reusing the current token until half its lifetime is over.
func (r *ClusterReconciler) grantReader(ctx context.Context, w *clusterWork, other string, state remotecluster.State) (client.Object, error) {
	ns := r.Settings.Namespace
	own := readerOwnership(w.id)
	var objs []client.Object
	for _, o := range access.ReaderObjects(w.id, ns, own.Labels) {
		objs = append(objs, o.(client.Object))
	}
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, r.Scheme)
		if err != nil {
			return nil, err
		}
		o.GetObjectKind().SetGroupVersionKind(gvk)
	}
	if _, err := r.Applier.Apply(ctx, other+"/reader-for/"+w.id, state.Cluster.GetClient(), state.Cluster.GetAPIReader(), state.Cluster.GetClient(), own, objs); err != nil {
		return nil, err
	}

	existing := &corev1.Secret{}
	err := w.remote.GetAPIReader().Get(ctx, client.ObjectKey{Namespace: ns, Name: access.SecretName(other)}, existing)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	if err == nil {
		if issued, perr := time.Parse(time.RFC3339, existing.Annotations[access.IssuedAtAnnotation]); perr == nil &&
			time.Since(issued) < readerTokenLifetime/2 && len(existing.Data[other]) > 0 {
			return remoteSecret(ns, other, existing.Data[other], existing.Annotations[access.IssuedAtAnnotation], w.id), nil
		}
	}
	clientset, err := kubernetes.NewForConfig(state.Cluster.GetConfig())
	if err != nil {
		return nil, err
	}
	tr, err := clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, access.ReaderName(w.id), &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To(int64(readerTokenLifetime.Seconds()))},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("issuing a reader token: %w", err)
	}
	kubeconfig, err := access.Kubeconfig(other, state.Cluster.GetConfig(), tr.Status.Token)
	if err != nil {
		return nil, err
	}
	return remoteSecret(ns, other, kubeconfig, time.Now().UTC().Format(time.RFC3339), w.id), nil
}

func remoteSecret(ns, other string, kubeconfig []byte, issuedAt, owner string) client.Object {
	labels := map[string]string{remotecluster.RemoteSecretLabel: "true"}
	for k, v := range ownership(owner).Labels {
		labels[k] = v
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: access.SecretName(other), Namespace: ns, Labels: labels,
			Annotations: map[string]string{access.IssuedAtAnnotation: issuedAt, "networking.istio.io/cluster": other}},
		Data: map[string][]byte{other: kubeconfig},
	}
	s.SetGroupVersionKind(secretGVK)
	return s
}

// revokeReader deletes the reader identity of `reader`'s istiod from cluster `other`.
func (r *ClusterReconciler) revokeReader(ctx context.Context, reader, other string, state remotecluster.State) error {
	_, err := r.Applier.Prune(ctx, other+"/reader-for/"+reader, state.Cluster.GetClient(), state.Cluster.GetClient(),
		readerOwnership(reader), readerGVKs, nil)
	return err
}
