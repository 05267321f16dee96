package switching

import (
	"testing"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"
)

func managedInjector() *admissionv1.MutatingWebhookConfiguration {
	hook := func(name string) admissionv1.MutatingWebhook {
		return admissionv1.MutatingWebhook{Name: name,
			ClientConfig:   admissionv1.WebhookClientConfig{URL: ptr.To("https://mesh:15017/inject"), CABundle: []byte("mesh")},
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"x": name}}}
	}
	return &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", UID: "u1"},
		Webhooks: []admissionv1.MutatingWebhook{hook("rev.namespace.sidecar-injector.istio.io"), hook("other.example.com")}}
}

func TestSwitchInPlaceAndBack(t *testing.T) {
	original := managedInjector()
	mwc := original.DeepCopy()
	if !IsIstioInjector(mwc) {
		t.Fatal("not recognised as Istio's injector")
	}
	rec := RecordInjector(mwc)
	if !PointInjectorAtLocal(mwc, "istio-system", []byte("local")) {
		t.Fatal("nothing changed")
	}
	w := mwc.Webhooks[0]
	if w.ClientConfig.URL != nil || w.ClientConfig.Service.Name != "istiod" || string(w.ClientConfig.CABundle) != "local" {
		t.Errorf("injection webhook not pointed at the local istiod: %+v", w.ClientConfig)
	}
	if !equality.Semantic.DeepEqual(w.ObjectSelector, original.Webhooks[0].ObjectSelector) {
		t.Error("selectors changed: other pods would be injected")
	}
	if !equality.Semantic.DeepEqual(mwc.Webhooks[1], original.Webhooks[1]) {
		t.Error("a webhook that is not Istio's injection was changed")
	}
	if PointInjectorAtLocal(mwc, "istio-system", []byte("local")) {
		t.Error("a second switch changed something")
	}
	repointed := mwc.DeepCopy()
	if changed, others := RestoreInjector(mwc, rec, "istio-system", []byte("local")); !changed || len(others) > 0 || !equality.Semantic.DeepEqual(mwc, original) {
		t.Errorf("switching back did not restore the original (others %v):\n%+v", others, mwc.Webhooks[0].ClientConfig)
	}
	// Somebody points the webhook elsewhere while switched: switching back leaves it.
	elsewhere := "https://127.0.0.1:2/inject"
	repointed.Webhooks[0].ClientConfig = admissionv1.WebhookClientConfig{URL: &elsewhere}
	if changed, others := RestoreInjector(repointed, rec, "istio-system", []byte("local")); changed || len(others) != 1 ||
		*repointed.Webhooks[0].ClientConfig.URL != elsewhere {
		t.Errorf("a webhook somebody re-pointed was restored (changed %v, others %v)", changed, others)
	}
}

// A webhook that called Service istiod keeps its call; the switch changed only its
// caBundle, which switching back restores unless somebody else changed it since.
func TestRestoreGivesBackOnlyTheSwitchsCABundle(t *testing.T) {
	mwc := managedInjector()
	mwc.Webhooks[0].ClientConfig = admissionv1.WebhookClientConfig{CABundle: []byte("mesh"),
		Service: &admissionv1.ServiceReference{Namespace: "istio-system", Name: "istiod", Path: ptr.To("/inject/cluster/c2/net/n1"), Port: ptr.To[int32](443)}}
	original := mwc.DeepCopy()
	rec := RecordInjector(mwc)
	if !PointInjectorAtLocal(mwc, "istio-system", []byte("local")) || string(mwc.Webhooks[0].ClientConfig.CABundle) != "local" {
		t.Fatalf("the caBundle does not trust the local istiod: %+v", mwc.Webhooks[0].ClientConfig)
	}
	rotated := mwc.DeepCopy()
	if changed, others := RestoreInjector(mwc, rec, "istio-system", []byte("local")); !changed || len(others) > 0 || !equality.Semantic.DeepEqual(mwc, original) {
		t.Errorf("the switch's caBundle was not given back (others %v): %+v", others, mwc.Webhooks[0].ClientConfig)
	}
	rotated.Webhooks[0].ClientConfig.CABundle = []byte("rotated-by-its-owner")
	changed, others := RestoreInjector(rotated, rec, "istio-system", []byte("local"))
	if changed || len(others) != 1 || others[0] != "rev.namespace.sidecar-injector.istio.io (caBundle)" ||
		string(rotated.Webhooks[0].ClientConfig.CABundle) != "rotated-by-its-owner" {
		t.Errorf("a caBundle somebody else changed was overwritten or not reported (changed %v, others %v)", changed, others)
	}
}

func TestStateRoundTripKeepsTokens(t *testing.T) {
	st := &State{SwitchedAt: time.Date(2026, 11, 27, 8, 0, 1, 0, time.UTC), Injectors: []WebhookConfigRecord{RecordInjector(managedInjector())},
		Lead: &AnnotationRecord{Present: true, Value: "mesh"}}
	data, err := st.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(&corev1.ConfigMap{Data: data})
	if err != nil {
		t.Fatal(err)
	}
	if back.SwitchToken() != "switch-20261127T080001Z" || back.BackToken() != "back-20261127T080001Z" || len(back.Injectors) != 1 ||
		back.Lead == nil || back.Lead.Value != "mesh" {
		t.Errorf("round trip: %+v", back)
	}
	if _, err := Decode(&corev1.ConfigMap{Data: map[string]string{"state": "{"}}); err == nil {
		t.Error("a corrupt record was accepted")
	}
}

func TestGatewayRestartOncePerToken(t *testing.T) {
	dep := &appsv1.Deployment{}
	if !MarkRestart(dep, "switch-a") || MarkRestart(dep, "switch-a") {
		t.Error("the same switch restarted the gateway twice")
	}
	if !MarkRestart(dep, "back-a") {
		t.Error("switching back did not restart the gateway")
	}
	matches := func(l map[string]string) bool {
		for _, sel := range GatewaySelectors() {
			if sel.Matches(labels.Set(l)) {
				return true
			}
		}
		return false
	}
	for l, want := range map[string]bool{"ingressgateway": true, "eastwestgateway": true, "egressgateway": true, "pilot": false} {
		if matches(map[string]string{"istio": l}) != want {
			t.Errorf("istio=%s: gateway = %v", l, !want)
		}
	}
	if !matches(map[string]string{"gateway.istio.io/managed": "istio.io-gateway-controller"}) {
		t.Error("Gateway API gateways are not restarted")
	}
}

func managedValidator() *admissionv1.ValidatingWebhookConfiguration {
	return &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "istio-validator-istio-system", UID: "u2"},
		Webhooks: []admissionv1.ValidatingWebhook{{Name: "rev.validation.istio.io",
			ClientConfig:  admissionv1.WebhookClientConfig{URL: ptr.To("https://mesh:15017/validate"), CABundle: []byte("mesh")},
			FailurePolicy: ptr.To(admissionv1.Ignore)}}}
}

func TestValidatorInPlaceAndBack(t *testing.T) {
	original := managedValidator()
	vwc := original.DeepCopy()
	if !IsIstioValidator(vwc) {
		t.Fatal("Istio's validator is not recognised")
	}
	if IsIstioValidator(&admissionv1.ValidatingWebhookConfiguration{Webhooks: []admissionv1.ValidatingWebhook{{Name: "policy.example.com"}}}) {
		t.Error("another validator was taken for Istio's")
	}
	rec := RecordValidator(vwc)
	if !PointValidatorAtLocal(vwc, "istio-system", []byte("local")) {
		t.Fatal("nothing changed")
	}
	cc := vwc.Webhooks[0].ClientConfig
	if cc.URL != nil || cc.Service.Name != "istiod" || *cc.Service.Path != "/validate" || string(cc.CABundle) != "local" {
		t.Errorf("validation webhook not pointed at the local istiod: %+v", cc)
	}
	// The local istiod tightens the failure policy once it serves; switching back
	// gives the mesh's choice back.
	vwc.Webhooks[0].FailurePolicy = ptr.To(admissionv1.Fail)
	if changed, _ := RestoreValidator(vwc, rec, "istio-system", nil); !changed || !equality.Semantic.DeepEqual(vwc, original) {
		t.Errorf("switching back did not restore the original: %+v", vwc.Webhooks[0])
	}
}

func TestLeadAnnotationTakenAndGivenBack(t *testing.T) {
	for _, before := range []map[string]string{nil, {LeadAnnotation: "mesh-cluster"}, {LeadAnnotation: "*", "other": "x"}} {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "istio-system", Annotations: before}}
		original := ns.DeepCopy()
		rec := RecordLead(ns)
		if !TakeLead(ns, "cluster-2") || ns.Annotations[LeadAnnotation] != "cluster-2" {
			t.Fatalf("%v: the cluster's own istiod was not named", before)
		}
		if TakeLead(ns, "cluster-2") {
			t.Errorf("%v: taking the lead twice changed something", before)
		}
		if !RestoreLead(ns, rec) || !equality.Semantic.DeepEqual(ns.Annotations, original.Annotations) && len(ns.Annotations)+len(original.Annotations) > 0 {
			t.Errorf("%v: not restored, got %v", before, ns.Annotations)
		}
		if RestoreLead(ns, nil) {
			t.Error("a missing record changed the namespace")
		}
	}
}
