package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/access"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/remotecluster"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// Lifetime of the reader tokens in distributed remote secrets; they are re-issued
// after half of it.
const readerTokenLifetime = 24 * time.Hour

// staleGrantAge is how old a reader identity nobody holds must be before a cluster's
// own reconcile removes it.
const staleGrantAge = 10 * time.Minute

// Reasons of the MutualAccess condition.
const (
	ReasonGranted         = "Granted"
	ReasonPeerUnreachable = "PeerUnreachable"
)

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
//
// Peers are worked on side by side, each with its own deadline, and a peer that
// cannot be reached costs only itself: the cluster keeps the secret it already holds
// for that peer (its token lasts readerTokenLifetime), and the others go on.
func (r *ClusterReconciler) reconcileAccess(ctx context.Context, w *clusterWork, enabled bool) ([]client.Object, error) {
	if !enabled {
		meta.RemoveStatusCondition(&w.status.Conditions, v1beta1.ConditionMutualAccess)
		// Grants are revoked before the secrets that use them are pruned, so a cluster
		// that holds no distributed secret has no grants anywhere: nothing to ask the
		// other clusters, and one broken cluster cannot hold up the others.
		held, err := r.holdsDistributedSecrets(ctx, w)
		if err != nil || !held {
			return nil, err
		}
	}
	var peers []string
	states := map[string]remotecluster.State{}
	for _, other := range r.Clusters.Engaged() {
		if other == w.id {
			continue
		}
		state, found, err := r.Clusters.Lookup(ctx, other)
		if err != nil || !found || state.Cluster == nil {
			continue // reported on that cluster's own entry, if it has one
		}
		peers = append(peers, other)
		states[other] = state
	}
	results := make([]peerAccess, len(peers))
	var wg sync.WaitGroup
	for i, other := range peers {
		wg.Go(func() {
			otherCtx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			results[i].peer = other
			if reason := notConnected(w.mc, other); reason != "" && enabled {
				results[i].err = errors.New(reason) // tried on its own reconcile, not here
				return
			}
			if !enabled {
				results[i].err = r.revokeReader(otherCtx, w.id, other, states[other])
				return
			}
			results[i].secret, results[i].err = r.grantReader(otherCtx, w, other, states[other])
		})
	}
	wg.Wait()
	if !enabled {
		// A peer that cannot be reached now keeps the reader identity until it can: its
		// own reconcile sweeps grants nobody holds (sweepStaleGrants), and the tokens
		// held for it go with this cluster's secrets.
		for _, res := range results {
			if res.err != nil {
				r.event(w, corev1.EventTypeWarning, ReasonPeerUnreachable,
					"cannot revoke the reader %s of cluster %s in cluster %s now (%s); it is removed once that cluster is reconciled",
					access.ReaderName(w.id), w.id, res.peer, errorSummary(res.err))
			}
		}
		return nil, nil
	}
	return r.accessOutcome(ctx, w, results)
}

// notConnected says why a peer with an entry of its own is known not to be connected,
// or "".
func notConnected(mc *v1beta1.ASMMeshConfig, peer string) string {
	st := clusterStatus(mc, peer)
	if st == nil {
		return ""
	}
	if c := meta.FindStatusCondition(st.Conditions, v1beta1.ConditionConnected); c != nil && c.Status == metav1.ConditionFalse {
		return "not connected: " + c.Reason
	}
	return ""
}

// peerAccess is the outcome of granting one peer.
type peerAccess struct {
	peer   string
	secret client.Object
	err    error
}

// accessOutcome keeps, for every peer that could not be granted now, the secret the
// cluster already holds, and reports the peers per name.
func (r *ClusterReconciler) accessOutcome(ctx context.Context, w *clusterWork, results []peerAccess) ([]client.Object, error) {
	var secrets []client.Object
	var failed []string
	for _, res := range results {
		if res.err == nil {
			secrets = append(secrets, res.secret)
			continue
		}
		failed = append(failed, fmt.Sprintf("%s (%s)", res.peer, errorSummary(res.err)))
		held := &corev1.Secret{}
		err := w.remote.GetAPIReader().Get(ctx, client.ObjectKey{Namespace: r.Settings.Namespace, Name: access.SecretName(res.peer)}, held)
		switch {
		case err == nil && held.Labels[render.ManagedByLabel] == render.ManagedByValue && held.Labels[render.ClusterIDLabel] == w.id:
			secrets = append(secrets, remoteSecret(r.Settings.Namespace, res.peer, held.Data[res.peer],
				held.Annotations[access.IssuedAtAnnotation], w.id))
		case err != nil && !apierrors.IsNotFound(err):
			return nil, fmt.Errorf("reading the remote secret for cluster %s: %w", res.peer, err)
		}
	}
	if len(failed) > 0 {
		w.set(v1beta1.ConditionMutualAccess, false, ReasonPeerUnreachable,
			"istiod of cluster %s holds remote secrets for %d of %d other clusters; not renewed now, the secret already held is kept: %s",
			w.id, len(results)-len(failed), len(results), strings.Join(failed, "; "))
		r.event(w, corev1.EventTypeWarning, ReasonPeerUnreachable, "mutual access of cluster %s: %s", w.id, strings.Join(failed, "; "))
		return secrets, nil
	}
	w.set(v1beta1.ConditionMutualAccess, true, ReasonGranted, "istiod of cluster %s holds a current remote secret for each of the %d other clusters", w.id, len(results))
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
	// The binding after its role exists: the operator may bind only istiod's roles by
	// name, so the API server checks the role's rules against its own, and a dry run of
	// both at once would find no role to check.
	var roles, bindings []client.Object
	for _, o := range objs {
		if o.GetObjectKind().GroupVersionKind().Kind == "ClusterRoleBinding" {
			bindings = append(bindings, o)
		} else {
			roles = append(roles, o)
		}
	}
	for _, batch := range [][]client.Object{roles, bindings} {
		if _, err := r.Applier.Apply(ctx, other+"/reader-for/"+w.id, state.Cluster.GetClient(), state.Cluster.GetAPIReader(), state.Cluster.GetClient(), own, batch); err != nil {
			return nil, err
		}
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

// sweepStaleGrants deletes, in the cluster, reader identities of clusters that no longer
// have mutual access: those whose revocation could not reach this cluster at the time.
func (r *ClusterReconciler) sweepStaleGrants(ctx context.Context, w *clusterWork) error {
	holders := map[string]bool{}
	for id, e := range w.mc.Spec.ExternalIstiodConfigurations {
		if e.MutualAccess && w.mc.DeletionTimestamp == nil {
			holders[id] = true
		}
	}
	stale := map[string]bool{}
	for _, gvk := range readerGVKs {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		if err := w.remote.GetClient().List(ctx, list, client.MatchingLabels{render.ManagedByLabel: render.ManagedByValue},
			client.HasLabels{access.ReaderForLabel}); err != nil {
			return err
		}
		for _, item := range list.Items {
			// A grant younger than a reconcile may be for an entry this pass read too
			// early to see: deleting it would void the token just issued for it.
			if time.Since(item.CreationTimestamp.Time) < staleGrantAge {
				continue
			}
			if reader := item.Labels[access.ReaderForLabel]; !holders[reader] {
				stale[reader] = true
			}
		}
	}
	for reader := range stale {
		state := remotecluster.State{Cluster: w.remote}
		if err := r.revokeReader(ctx, reader, w.id, state); err != nil {
			return fmt.Errorf("removing the stale reader of cluster %s: %w", reader, err)
		}
	}
	return nil
}
