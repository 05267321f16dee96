package controller

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// ReasonTrustDomainChanged: the trust domain of a switched cluster's istiod changed.
const ReasonTrustDomainChanged = "TrustDomainChanged"

// istioDefaultTrustDomain is MeshConfig's trustDomain when the mesh config sets none.
const istioDefaultTrustDomain = "cluster.local"

// noteTrustDomain records the trust domain just applied to the cluster's istiod and,
// when it differs from the one before on a switched cluster, warns: every workload
// identity there changes as its sidecars get new certificates, and policies naming the
// old principals stop matching. It does not hold the change back: the spec (or the
// mesh control plane's mesh config) asks for it.
func (r *ClusterReconciler) noteTrustDomain(w *clusterWork, istiod istiodResult) {
	if c := meta.FindStatusCondition(w.status.Conditions, v1beta1.ConditionTrustDomainChanged); c != nil && c.ObservedGeneration != w.mc.Generation {
		meta.RemoveStatusCondition(&w.status.Conditions, v1beta1.ConditionTrustDomainChanged)
	}
	if !istiod.applied {
		return
	}
	td := appliedTrustDomain(istiod.objs)
	prev := w.status.TrustDomain
	w.status.TrustDomain = td
	if td == "" || prev == "" || prev == td || !meta.IsStatusConditionTrue(w.status.Conditions, v1beta1.ConditionSwitched) {
		return
	}
	const format = "the trust domain of istiod in switched cluster %s changed from %s to %s: every workload identity there changes " +
		"(spiffe://%s/...) as sidecars get new certificates, and AuthorizationPolicies or peers that name spiffe://%s/... principals stop matching them; " +
		"if that is not meant, set spec.trustDomain back to %s, or keep the old one valid with meshConfig.trustDomainAliases"
	w.set(v1beta1.ConditionTrustDomainChanged, true, ReasonTrustDomainChanged, format, w.id, prev, td, td, prev, prev)
	r.event(w, corev1.EventTypeWarning, ReasonTrustDomainChanged, format, w.id, prev, td, td, prev, prev)
}

// appliedTrustDomain is the trustDomain of the mesh config among istiod's objects (its
// ConfigMap istio), "" when there is none.
func appliedTrustDomain(objs []client.Object) string {
	for _, o := range objs {
		cm, ok := o.(*corev1.ConfigMap)
		if !ok || cm.Name != "istio" {
			continue
		}
		var mesh struct {
			TrustDomain string `json:"trustDomain"`
		}
		if err := yaml.Unmarshal([]byte(cm.Data["mesh"]), &mesh); err != nil {
			return ""
		}
		if mesh.TrustDomain == "" {
			return istioDefaultTrustDomain
		}
		return mesh.TrustDomain
	}
	return ""
}
