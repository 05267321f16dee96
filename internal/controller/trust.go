package controller

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	"sigs.k8s.io/controller-runtime/pkg/source"
	mcreconcile "sigs.k8s.io/multicluster-runtime/pkg/reconcile"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// Reasons of the MeshTrust condition and of the Applied condition when it blocks.
const (
	ReasonNoMeshCA           = "NoMeshCA"
	ReasonInvalidMeshCA      = "InvalidMeshCA"
	ReasonIntermediateIssued = "IntermediateIssued"
	ReasonIndependentRoot    = "IndependentRoot"
	ReasonProvidedCACerts    = "ProvidedCACerts"
	ReasonMeshCAExpiring     = "MeshCAExpiring"
)

// cacertsName is Istio's plugged-in CA Secret, in the mesh and in data-plane clusters.
const cacertsName = "cacerts"

// Defaults of the intermediate CA, used when the settings leave them zero.
const (
	defaultCALifetime    = 90 * 24 * time.Hour
	defaultCARenewBefore = 30 * 24 * time.Hour
)

// +kubebuilder:rbac:groups="",namespace=istio-system,resources=secrets,verbs=get

// reconcileTrust gives the cluster's istiod an intermediate CA of the mesh CA, issued
// here so that the mesh CA's key never leaves the mesh cluster, and renewed before it
// expires. It returns the cacerts Secret to apply (nil when none) and the fingerprint
// that rolls istiod when it changes; ok is false when nothing may be applied.
func (r *ClusterReconciler) reconcileTrust(ctx context.Context, w *clusterWork) (secret client.Object, fingerprint string, ok bool, err error) {
	ns := r.Settings.Namespace
	meshCA := &corev1.Secret{}
	err = r.LocalReader.Get(ctx, client.ObjectKey{Namespace: ns, Name: cacertsName}, meshCA)
	switch {
	case apierrors.IsNotFound(err):
		if w.mc.Spec.AllowIndependentRootCA {
			w.set(v1beta1.ConditionMeshTrust, false, ReasonIndependentRoot,
				"the mesh cluster has no %s/%s: istiod in cluster %s signs with a root of its own (spec.allowIndependentRootCA), so its workloads and the mesh's do not trust each other", ns, cacertsName, w.id)
			return nil, "", true, nil
		}
		msg := fmt.Sprintf("the mesh cluster has no Secret %s/%s (Istio's plugged-in CA): istiod in cluster %s would sign with an unrelated root "+
			"and its workloads could not talk mTLS with the mesh's; add the mesh CA as %s, or set spec.allowIndependentRootCA to accept that", ns, cacertsName, w.id, cacertsName)
		w.set(v1beta1.ConditionMeshTrust, false, ReasonNoMeshCA, "%s", msg)
		w.set(v1beta1.ConditionApplied, false, ReasonNoMeshCA, "%s", msg)
		r.event(w, corev1.EventTypeWarning, ReasonNoMeshCA, "no mesh CA (%s/%s): istiod is not started in cluster %s", ns, cacertsName, w.id)
		return nil, "", false, nil
	case err != nil:
		return nil, "", false, err
	}
	issuer, err := ca.NewIssuer(ca.Bundle(meshCA.Data))
	if err != nil {
		msg := fmt.Sprintf("the mesh cluster's %s/%s cannot be used: %v; fix it", ns, cacertsName, err)
		w.set(v1beta1.ConditionMeshTrust, false, ReasonInvalidMeshCA, "%s", msg)
		w.set(v1beta1.ConditionApplied, false, ReasonInvalidMeshCA, "%s", msg)
		return nil, "", false, nil
	}

	current := &corev1.Secret{}
	err = w.remote.GetAPIReader().Get(ctx, client.ObjectKey{Namespace: ns, Name: cacertsName}, current)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, "", false, err
	}
	if err == nil && current.Labels[render.ManagedByLabel] != render.ManagedByValue {
		w.set(v1beta1.ConditionMeshTrust, true, ReasonProvidedCACerts, "istiod in cluster %s signs with the %s Secret someone put there; the operator leaves it alone", w.id, cacertsName)
		return nil, fingerprintOf(current.Data[ca.CACert]), true, nil
	}
	lifetime, renewBefore := r.Settings.IntermediateCALifetime, r.Settings.IntermediateCARenewBefore
	if lifetime == 0 {
		lifetime = defaultCALifetime
	}
	if renewBefore == 0 {
		renewBefore = defaultCARenewBefore
	}
	bundle := ca.Bundle(current.Data)
	if err != nil || !issuer.Current(bundle, renewBefore, time.Now()) {
		if bundle, err = issuer.Issue(w.id, lifetime, time.Now()); err != nil {
			return nil, "", false, err
		}
		r.event(w, corev1.EventTypeNormal, ReasonIntermediateIssued, "issued an intermediate CA of the mesh CA for istiod in cluster %s", w.id)
	}
	// The mesh cluster keeps no copy of the Secret: the status says until when this
	// istiod can sign, also when the cluster cannot be reached.
	w.status.IntermediateCAExpiresAt = intermediateExpiry(bundle)
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: cacertsName, Namespace: ns, Labels: ownership(w.id).Labels},
		Data:       bundle,
	}
	s.SetGroupVersionKind(secretGVK)
	if ends := issuer.NotAfter(); time.Until(ends) < renewBefore {
		// No intermediate can outlive the mesh CA: a person has to renew it.
		msg := fmt.Sprintf("the mesh CA (%s/%s, %s) expires on %s, and the intermediate CA of istiod in cluster %s with it; "+
			"renew the mesh CA before then", ns, cacertsName, issuer.Fingerprint(), ends.UTC().Format(time.RFC3339), w.id)
		if c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionMeshTrust); c == nil || c.Reason != ReasonMeshCAExpiring {
			r.event(w, corev1.EventTypeWarning, ReasonMeshCAExpiring, "%s", msg)
		}
		w.set(v1beta1.ConditionMeshTrust, false, ReasonMeshCAExpiring, "%s", msg)
	} else {
		w.set(v1beta1.ConditionMeshTrust, true, ReasonIntermediateIssued,
			"istiod in cluster %s signs with an intermediate CA of the mesh CA (%s), renewed %s before it expires", w.id, issuer.Fingerprint(), renewBefore)
	}
	return s, fingerprintOf(bundle[ca.CACert]), true, nil
}

func fingerprintOf(cert []byte) string {
	if len(cert) == 0 {
		return ""
	}
	sum := sha256.Sum256(cert)
	return hex.EncodeToString(sum[:8])
}

// watchMeshCA watches the mesh cluster's cacerts alone, with a cache of its own: the
// mesh cache holds only remote secrets, and a rotated mesh CA should reach every
// cluster at once, not at its next resync.
func (r *ClusterReconciler) watchMeshCA(local manager.Manager) (source.TypedSource[mcreconcile.Request], error) {
	c, err := cache.New(local.GetConfig(), cache.Options{
		Scheme: local.GetScheme(), HTTPClient: local.GetHTTPClient(), Mapper: local.GetRESTMapper(),
		ByObject: map[client.Object]cache.ByObject{&corev1.Secret{}: {
			Namespaces: map[string]cache.Config{r.Settings.Namespace: {}},
			Field:      fields.OneTermEqualSelector("metadata.name", cacertsName),
		}},
	})
	if err != nil {
		return nil, err
	}
	if err := local.Add(c); err != nil {
		return nil, err
	}
	return source.TypedKind[client.Object, mcreconcile.Request](c, &corev1.Secret{}, r.everyClusterOnMeshSettings("", nil)), nil
}
