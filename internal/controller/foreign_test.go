package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// What keeps a namespace the operator created: anything but its own objects, owned
// objects and what Kubernetes and Istio put into every namespace.
func TestOwnedByNobodyElse(t *testing.T) {
	configMap, serviceAccount := schema.GroupKind{Kind: "ConfigMap"}, schema.GroupKind{Kind: "ServiceAccount"}
	obj := func(name string, edit func(*metav1.PartialObjectMetadata)) *metav1.PartialObjectMetadata {
		o := &metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if edit != nil {
			edit(o)
		}
		return o
	}
	for _, c := range []struct {
		what string
		gk   schema.GroupKind
		obj  *metav1.PartialObjectMetadata
		want bool
	}{
		{"someone's ConfigMap", configMap, obj("app-config", nil), false},
		{"someone's ServiceAccount", serviceAccount, obj("app", nil), false},
		{"the operator's", configMap, obj("istio", func(o *metav1.PartialObjectMetadata) {
			o.Labels = map[string]string{render.ManagedByLabel: render.ManagedByValue}
		}), true},
		{"an owned object", schema.GroupKind{Group: "apps", Kind: "ReplicaSet"}, obj("istiod-abc", func(o *metav1.PartialObjectMetadata) {
			o.OwnerReferences = []metav1.OwnerReference{{Kind: "Deployment", Name: "istiod"}}
		}), true},
		{"kube-root-ca.crt", configMap, obj("kube-root-ca.crt", nil), true},
		{"Istio's root certificate", configMap, obj(rootCertConfigMap, nil), true},
		{"a leader election record", configMap, obj("istio-namespace-controller-election", func(o *metav1.PartialObjectMetadata) {
			o.Annotations = map[string]string{leaderAnnotation: "{}"}
		}), true},
		{"the default ServiceAccount", serviceAccount, obj("default", nil), true},
		{"a Secret named default", schema.GroupKind{Kind: "Secret"}, obj("default", nil), false},
	} {
		if got := ownedByNobodyElse(c.gk, c.obj); got != c.want {
			t.Errorf("%s: %v, want %v", c.what, got, c.want)
		}
	}
}

func TestDescribeForeign(t *testing.T) {
	if got := describeForeign(nil, "objects"); got != "" {
		t.Errorf("nothing foreign: %q", got)
	}
	got := describeForeign([]string{"d", "b", "a", "c", "e"}, "VirtualService")
	if want := "VirtualService the operator did not create: a, b, c and 2 more"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
}
