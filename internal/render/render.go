package render

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/apiutil"
)

type renderer struct {
	in Inputs
	v  Version
}

// labels adds the ownership labels to an object's chart labels.
func (r *renderer) labels(chart map[string]string) map[string]string {
	out := map[string]string{ManagedByLabel: ManagedByValue, ClusterIDLabel: r.in.ClusterID}
	for k, v := range chart {
		out[k] = v
	}
	if r.v.AtLeast(24) {
		// The chart's app.kubernetes.io/name and istio.labels, for the release istiod;
		// app.kubernetes.io/managed-by stays the operator's.
		out["app.kubernetes.io/name"] = "istiod"
		out["app.kubernetes.io/instance"] = "istiod"
		out["app.kubernetes.io/part-of"] = "istio"
		out["app.kubernetes.io/version"] = r.in.Version
	}
	return out
}

// Render returns the istiod objects for one data-plane cluster in the order they are
// applied: identity and permissions, configuration, workload, then validation. The
// injection webhook is not part of it: injection moves to the local istiod only once
// it is ready (see InjectionWebhook). Every object has its GroupVersionKind set.
func Render(in Inputs, scheme *runtime.Scheme) ([]client.Object, error) {
	v, err := ParseVersion(in.Version)
	if err != nil {
		return nil, err
	}
	if err := in.validate(); err != nil {
		return nil, err
	}
	r := &renderer{in: in, v: v}
	mesh, err := r.meshConfigMap()
	if err != nil {
		return nil, err
	}
	injector, err := r.injectorConfigMap()
	if err != nil {
		return nil, err
	}
	objs := []client.Object{r.serviceAccount()}
	for _, o := range r.rbac() {
		objs = append(objs, o.(client.Object))
	}
	objs = append(objs, mesh, injector, r.service(), r.deployment())
	if pdb := r.podDisruptionBudget(); pdb != nil {
		objs = append(objs, pdb)
	}
	if !in.ForeignValidators {
		objs = append(objs, r.validationWebhook())
	}
	return withKinds(objs, scheme)
}

// InjectionWebhook is the operator's own injection webhook, for a cluster that has no
// injector of the mesh control plane to take over. It is applied only when the cluster
// switches, with the root certificate of the local istiod as caBundle.
func InjectionWebhook(in Inputs, caBundle []byte, scheme *runtime.Scheme) (client.Object, error) {
	v, err := ParseVersion(in.Version)
	if err != nil {
		return nil, err
	}
	r := &renderer{in: in, v: v}
	mwc := r.injectionWebhook()
	for i := range mwc.Webhooks {
		mwc.Webhooks[i].ClientConfig.CABundle = caBundle
	}
	objs, err := withKinds([]client.Object{mwc}, scheme)
	if err != nil {
		return nil, err
	}
	return objs[0], nil
}

func withKinds(objs []client.Object, scheme *runtime.Scheme) ([]client.Object, error) {
	for _, o := range objs {
		gvk, err := apiutil.GVKForObject(o, scheme)
		if err != nil {
			return nil, fmt.Errorf("rendered %T is not in the scheme: %w", o, err)
		}
		o.GetObjectKind().SetGroupVersionKind(gvk)
	}
	return objs, nil
}

// Hash identifies a rendered set: equal hashes mean equal objects.
func Hash(objs []client.Object) string {
	h := sha256.New()
	for _, o := range objs {
		raw, _ := json.Marshal(o) // rendered objects always marshal
		h.Write(raw)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// OwnedKinds are every kind Render can produce: pruning and cleanup look through these.
var OwnedKinds = []schema.GroupVersionKind{
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "MutatingWebhookConfiguration"},
	{Group: "admissionregistration.k8s.io", Version: "v1", Kind: "ValidatingWebhookConfiguration"},
	{Group: "apps", Version: "v1", Kind: "Deployment"},
	{Group: "policy", Version: "v1", Kind: "PodDisruptionBudget"},
	{Group: "", Version: "v1", Kind: "Service"},
	{Group: "", Version: "v1", Kind: "ConfigMap"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "RoleBinding"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "Role"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRoleBinding"},
	{Group: "rbac.authorization.k8s.io", Version: "v1", Kind: "ClusterRole"},
	{Group: "", Version: "v1", Kind: "ServiceAccount"},
}
