package controller

import (
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"

	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

func injectorLabelled(name string, labels map[string]string) admissionv1.MutatingWebhookConfiguration {
	return admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func TestInjectorRevision(t *testing.T) {
	for name, tc := range map[string]struct {
		injectors []admissionv1.MutatingWebhookConfiguration
		rev       string
		noted     bool
	}{
		"no injector":  {nil, "default", true},
		"unlabelled":   {[]admissionv1.MutatingWebhookConfiguration{injectorLabelled("istio-sidecar-injector", nil)}, "default", false},
		"default":      {[]admissionv1.MutatingWebhookConfiguration{injectorLabelled("istio-sidecar-injector", map[string]string{revisionLabel: "default"})}, "default", false},
		"one revision": {[]admissionv1.MutatingWebhookConfiguration{injectorLabelled("istio-sidecar-injector-1-28", map[string]string{revisionLabel: "1-28"})}, "1-28", false},
		"the default tag wins": {[]admissionv1.MutatingWebhookConfiguration{
			injectorLabelled("istio-sidecar-injector", map[string]string{revisionLabel: "default"}),
			injectorLabelled("istio-revision-tag-default", map[string]string{revisionLabel: "canary", tagLabel: "default"}),
		}, "canary", true},
		"default before others": {[]admissionv1.MutatingWebhookConfiguration{
			injectorLabelled("istio-sidecar-injector-canary", map[string]string{revisionLabel: "canary"}),
			injectorLabelled("istio-sidecar-injector", nil),
		}, "default", true},
	} {
		rev, note := injectorRevision(tc.injectors)
		if rev != tc.rev || (note != "") != tc.noted {
			t.Errorf("%s: revision %q note %q, want %q noted=%v", name, rev, note, tc.rev, tc.noted)
		}
	}
}

func TestRevisionNames(t *testing.T) {
	for rev, want := range map[string][3]string{
		"":        {"istio-sidecar-injector", "istio", "istiod"},
		"default": {"istio-sidecar-injector", "istio", "istiod"},
		"canary":  {"istio-sidecar-injector-canary", "istio-canary", "istiod-canary"},
	} {
		if a, b, c := revisionNames(rev); [3]string{a, b, c} != want {
			t.Errorf("revisionNames(%q) = %s %s %s", rev, a, b, c)
		}
	}
}

func TestImageTag(t *testing.T) {
	for image, want := range map[string]string{
		"docker.io/istio/pilot:1.28.3":                "1.28.3",
		"registry:5000/istio/pilot:1.28.3-distroless": "1.28.3-distroless",
		"registry:5000/istio/pilot":                   "",
		"docker.io/istio/pilot:1.28.3@sha256:abc":     "1.28.3",
		"docker.io/istio/pilot@sha256:abc":            "",
	} {
		if got := imageTag(image); got != want {
			t.Errorf("imageTag(%q) = %q, want %q", image, got, want)
		}
	}
}

// TestMeshSettingsEvents checks which mesh cluster events wake the clusters: the
// ConfigMaps and istiod of any revision in the control plane namespace, and only when
// what is copied changes; never a leader election ConfigMap renewing its lease.
func TestMeshSettingsEvents(t *testing.T) {
	r := &ClusterReconciler{Settings: render.Settings{Namespace: "istio-system"}}
	p := r.meshSettingsChanged()
	cm := func(ns, name string, data map[string]string, annotations map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Annotations: annotations}, Data: data}
	}
	istiod := func(ns, name, image string, replicas int32) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "discovery", Image: image}}
		d.Status.ReadyReplicas = replicas
		return d
	}
	for name, tc := range map[string]struct {
		old, new client.Object
		want     bool
	}{
		"mesh config created":   {nil, cm("istio-system", "istio", map[string]string{"mesh": "a"}, nil), true},
		"revision's injector":   {nil, cm("istio-system", "istio-sidecar-injector-canary", nil, nil), true},
		"another namespace":     {nil, cm("default", "istio", nil, nil), false},
		"another ConfigMap":     {nil, cm("istio-system", "kube-root-ca.crt", nil, nil), false},
		"mesh config changed":   {cm("istio-system", "istio", map[string]string{"mesh": "a"}, nil), cm("istio-system", "istio", map[string]string{"mesh": "b"}, nil), true},
		"lease renewed":         {cm("istio-system", "istio-leader", nil, map[string]string{"leader": "1"}), cm("istio-system", "istio-leader", nil, map[string]string{"leader": "2"}), false},
		"istiod image changed":  {istiod("istio-system", "istiod", "pilot:1.28.3", 1), istiod("istio-system", "istiod", "pilot:1.28.4", 1), true},
		"istiod status changed": {istiod("istio-system", "istiod", "pilot:1.28.3", 1), istiod("istio-system", "istiod", "pilot:1.28.3", 2), false},
		"a gateway":             {nil, istiod("istio-system", "istio-ingressgateway", "proxyv2:1.28.3", 1), false},
		"revision istiod":       {nil, istiod("istio-system", "istiod-canary", "pilot:1.28.3", 1), true},
		"istiod elsewhere":      {nil, istiod("other", "istiod", "pilot:1.28.3", 1), false},
	} {
		var got bool
		if tc.old == nil {
			got = p.Create(event.CreateEvent{Object: tc.new}) && p.Delete(event.DeleteEvent{Object: tc.new})
			if !got && (p.Create(event.CreateEvent{Object: tc.new}) || p.Delete(event.DeleteEvent{Object: tc.new})) {
				t.Errorf("%s: create and delete disagree", name)
			}
		} else {
			got = p.Update(event.UpdateEvent{ObjectOld: tc.old, ObjectNew: tc.new})
		}
		if got != tc.want {
			t.Errorf("%s: wakes the clusters = %v, want %v", name, got, tc.want)
		}
	}
}
