package switching

import (
	"regexp"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
)

func TestCopyName(t *testing.T) {
	seen := map[string]string{}
	for _, id := range []string{"cluster-2", "Cluster_2", "cluster_2", "CLUSTER-2", "a.b", strings.Repeat("x", 63)} {
		name := CopyName(id)
		if errs := k8svalidation.IsDNS1123Subdomain(name); len(errs) > 0 {
			t.Errorf("CopyName(%q) = %q is no ConfigMap name: %v", id, name, errs)
		}
		if other, ok := seen[name]; ok {
			t.Errorf("CopyName(%q) = CopyName(%q) = %q", id, other, name)
		}
		seen[name] = id
	}
	if got := CopyName("cluster-2"); got != "remote-istiod-operator-switch-cluster-2" {
		t.Errorf("a cluster ID that is a name already is kept as it is, got %q", got)
	}
	if !regexp.MustCompile(`^remote-istiod-operator-switch-cluster-2-[0-9a-f]{8}$`).MatchString(CopyName("Cluster_2")) {
		t.Errorf("CopyName(Cluster_2) = %q", CopyName("Cluster_2"))
	}
}

func TestSame(t *testing.T) {
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := &State{SwitchedAt: at, Injectors: []WebhookConfigRecord{{Name: "istio-sidecar-injector", UID: "u1"}}}
	b := &State{SwitchedAt: at, Injectors: []WebhookConfigRecord{{Name: "istio-sidecar-injector", UID: "u1"}}}
	if !Same(a, b) {
		t.Error("equal records differ")
	}
	b.Injectors[0].UID = "u2"
	if Same(a, b) {
		t.Error("records of different injectors are the same")
	}
	if Same(a, nil) || Same(nil, nil) {
		t.Error("no record is the same as another")
	}
}

func TestTracesFound(t *testing.T) {
	profile := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istiod"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP}}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system", Annotations: map[string]string{LeadAnnotation: "mesh"}}}
	gateway := appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-ingressgateway"}}
	gateway.Spec.Template.Annotations = map[string]string{RestartAnnotation: "back-20260101T000000Z"}

	never := Traces{Address: profile, Namespace: ns, Gateways: []appsv1.Deployment{gateway}}
	if found := never.Found("cluster-2"); len(found) != 0 {
		t.Fatalf("a cluster as the remote profile and a switch-back left it shows traces: %v", found)
	}

	switched := profile.DeepCopy()
	switched.Spec.Selector = map[string]string{"app": "istiod", "istio": "pilot"}
	led := ns.DeepCopy()
	led.Annotations[LeadAnnotation] = "cluster-2"
	restarted := *gateway.DeepCopy()
	restarted.Spec.Template.Annotations[RestartAnnotation] = "switch-20260102T000000Z"
	for name, tc := range map[string]struct {
		traces Traces
		want   string
	}{
		"address": {Traces{Address: switched, Namespace: ns}, "Service istio-system/istiod selects the local istiod's pods"},
		"lead":    {Traces{Address: profile, Namespace: led}, "names the cluster itself"},
		"gateway": {Traces{Namespace: ns, Gateways: []appsv1.Deployment{gateway, restarted}}, "istio-system/istio-ingressgateway (switch-20260102T000000Z)"},
	} {
		found := tc.traces.Found("cluster-2")
		if len(found) != 1 || !strings.Contains(found[0], tc.want) {
			t.Errorf("%s: found %v, want one trace with %q", name, found, tc.want)
		}
	}
	external := profile.DeepCopy()
	external.Spec.Type, external.Spec.ExternalName = corev1.ServiceTypeExternalName, "istiod.mesh.example"
	if found := (Traces{Address: external}).Found("cluster-2"); len(found) != 0 {
		t.Errorf("an ExternalName Service leads to the mesh, found %v", found)
	}
}
