package render

import (
	admissionv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func selector(exprs ...metav1.LabelSelectorRequirement) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchExpressions: exprs}
}

func in(key string, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpIn, Values: values}
}

func notIn(key string, values ...string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpNotIn, Values: values}
}

func absent(key string) metav1.LabelSelectorRequirement {
	return metav1.LabelSelectorRequirement{Key: key, Operator: metav1.LabelSelectorOpDoesNotExist}
}

func (r *renderer) admissionReviewVersions() []string {
	if r.v.AtLeast(23) {
		return []string{"v1"}
	}
	return []string{"v1beta1", "v1"}
}

// injectionWebhook is the MutatingWebhookConfiguration of the default revision. istiod
// fills in the caBundle of every webhook whose name ends in sidecar-injector.istio.io.
func (r *renderer) injectionWebhook() *admissionv1.MutatingWebhookConfiguration {
	hook := func(name string, ns, obj *metav1.LabelSelector) admissionv1.MutatingWebhook {
		return admissionv1.MutatingWebhook{
			Name: name,
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{
				Name: "istiod", Namespace: r.in.Namespace, Path: ptr.To("/inject"), Port: ptr.To[int32](443)}},
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create},
				Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
			}},
			FailurePolicy:           ptr.To(admissionv1.Fail),
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			ReinvocationPolicy:      ptr.To(admissionv1.NeverReinvocationPolicy),
			AdmissionReviewVersions: r.admissionReviewVersions(),
			NamespaceSelector:       ns,
			ObjectSelector:          obj,
		}
	}
	return &admissionv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector",
			Labels: r.pilotLabels(map[string]string{"app": "sidecar-injector"})},
		Webhooks: []admissionv1.MutatingWebhook{
			hook("rev.namespace.sidecar-injector.istio.io",
				selector(in("istio.io/rev", "default"), absent("istio-injection")),
				selector(notIn("sidecar.istio.io/inject", "false"))),
			hook("rev.object.sidecar-injector.istio.io",
				selector(absent("istio.io/rev"), absent("istio-injection")),
				selector(notIn("sidecar.istio.io/inject", "false"), in("istio.io/rev", "default"))),
			hook("namespace.sidecar-injector.istio.io",
				selector(in("istio-injection", "enabled")),
				selector(notIn("sidecar.istio.io/inject", "false"))),
			hook("object.sidecar-injector.istio.io",
				selector(absent("istio-injection"), absent("istio.io/rev")),
				selector(in("sidecar.istio.io/inject", "true"), absent("istio.io/rev"))),
		},
	}
}

// validationWebhook leaves failurePolicy to istiod: the chart installs Ignore and istiod
// patches it to Fail once it has proven it can validate. Owning that field would make
// every apply undo istiod's patch and every patch trigger another apply, so it is not
// rendered at all (the API server's default is Fail, as the chart's upgrades leave it).
func (r *renderer) validationWebhook() *admissionv1.ValidatingWebhookConfiguration {
	return &admissionv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-validator-" + r.in.Namespace,
			Labels: r.labels(map[string]string{"app": "istiod", "release": "istiod", "istio": "istiod", "istio.io/rev": "default"})},
		Webhooks: []admissionv1.ValidatingWebhook{{
			Name: "rev.validation.istio.io",
			ClientConfig: admissionv1.WebhookClientConfig{Service: &admissionv1.ServiceReference{
				Name: "istiod", Namespace: r.in.Namespace, Path: ptr.To("/validate")}}, // port 443, the API server's default
			Rules: []admissionv1.RuleWithOperations{{
				Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
				Rule: admissionv1.Rule{
					APIGroups:   []string{"security.istio.io", "networking.istio.io", "telemetry.istio.io", "extensions.istio.io"},
					APIVersions: []string{"*"}, Resources: []string{"*"},
				},
			}},
			SideEffects:             ptr.To(admissionv1.SideEffectClassNone),
			AdmissionReviewVersions: r.admissionReviewVersions(),
			ObjectSelector:          selector(in("istio.io/rev", "default")),
		}},
	}
}
