package switching

import (
	"bytes"
	"strings"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// webhookRole is one of the two jobs istiod does as an admission webhook: injecting
// sidecars and validating Istio configuration. istiod recognises its webhooks by
// these name suffixes, and so does the switch.
type webhookRole struct {
	suffix string
	path   string
}

var (
	injection  = webhookRole{suffix: "sidecar-injector.istio.io", path: "/inject"}
	validation = webhookRole{suffix: "validation.istio.io", path: "/validate"}
)

// hook is the part of one webhook a switch reads and changes, for either kind of
// webhook configuration.
type hook struct {
	name          string
	clientConfig  *admissionv1.WebhookClientConfig
	failurePolicy **admissionv1.FailurePolicyType
}

func mutatingHooks(mwc *admissionv1.MutatingWebhookConfiguration) []hook {
	out := make([]hook, 0, len(mwc.Webhooks))
	for i := range mwc.Webhooks {
		w := &mwc.Webhooks[i]
		out = append(out, hook{name: w.Name, clientConfig: &w.ClientConfig, failurePolicy: &w.FailurePolicy})
	}
	return out
}

func validatingHooks(vwc *admissionv1.ValidatingWebhookConfiguration) []hook {
	out := make([]hook, 0, len(vwc.Webhooks))
	for i := range vwc.Webhooks {
		w := &vwc.Webhooks[i]
		out = append(out, hook{name: w.Name, clientConfig: &w.ClientConfig, failurePolicy: &w.FailurePolicy})
	}
	return out
}

func (r webhookRole) matches(hooks []hook) bool {
	for _, h := range hooks {
		if strings.HasSuffix(h.name, r.suffix) {
			return true
		}
	}
	return false
}

func (r webhookRole) record(name string, uid types.UID, hooks []hook) WebhookConfigRecord {
	rec := WebhookConfigRecord{Name: name, UID: uid}
	for _, h := range hooks {
		if strings.HasSuffix(h.name, r.suffix) {
			rec.Webhooks = append(rec.Webhooks, WebhookRecord{Name: h.name, ClientConfig: *h.clientConfig.DeepCopy(),
				FailurePolicy: ptrCopy(*h.failurePolicy)})
		}
	}
	return rec
}

// localClientConfig sends the role's requests to the cluster's own istiod.
func (r webhookRole) localClientConfig(namespace string, caBundle []byte) admissionv1.WebhookClientConfig {
	return admissionv1.WebhookClientConfig{
		Service:  &admissionv1.ServiceReference{Name: "istiod", Namespace: namespace, Path: ptr.To(r.path), Port: ptr.To[int32](443)},
		CABundle: caBundle,
	}
}

// pointAtLocal changes only where the role's webhooks send requests; names, selectors
// and rules stay, so the same objects are handled, by one istiod.
func (r webhookRole) pointAtLocal(hooks []hook, namespace string, caBundle []byte) bool {
	want := r.localClientConfig(namespace, caBundle)
	changed := false
	for _, h := range hooks {
		if !strings.HasSuffix(h.name, r.suffix) || equality.Semantic.DeepEqual(*h.clientConfig, want) {
			continue
		}
		if callsAddress(h.clientConfig, namespace) {
			// Istio's remote profile: the webhook already calls Service istiod, which
			// the switch makes lead to the local istiod. Its path (with the cluster
			// and network parameters) stays; only a caBundle that does not trust the
			// local istiod's certificate changes.
			if !BundleHas(h.clientConfig.CABundle, caBundle) {
				h.clientConfig.CABundle = append([]byte(nil), caBundle...)
				changed = true
			}
			continue
		}
		*h.clientConfig = *want.DeepCopy()
		changed = true
	}
	return changed
}

// callsAddress reports whether a webhook calls Service <namespace>/istiod.
func callsAddress(cc *admissionv1.WebhookClientConfig, namespace string) bool {
	return cc.URL == nil && cc.Service != nil && cc.Service.Name == AddressService && cc.Service.Namespace == namespace
}

// BundleHas reports whether a caBundle already holds cert (PEM, as istiod publishes
// it in istio-ca-root-cert).
func BundleHas(bundle, cert []byte) bool {
	return len(cert) > 0 && bytes.Contains(bundle, bytes.TrimSpace(cert))
}

// sameTarget reports whether two client configurations call the same place.
func sameTarget(a, b admissionv1.WebhookClientConfig) bool {
	a.CABundle, b.CABundle = nil, nil
	return equality.Semantic.DeepEqual(a, b)
}

// restore gives the recorded webhooks back what the switch changed: where they send
// requests, and a caBundle the switch wrote (it holds localRoot, the root the switch
// and its upkeep write; with no localRoot known, any caBundle of a webhook the switch
// re-pointed); and their failure policy, which the local istiod may have tightened. A
// webhook that calls neither what was recorded nor the local istiod was re-pointed by
// somebody else since the switch: it is left as it is, and so is a caBundle somebody
// else changed. Both are returned, since restoring a stale copy could undo their change.
func (r webhookRole) restore(hooks []hook, rec WebhookConfigRecord, namespace string, localRoot []byte) (changed bool, othersChanged []string) {
	local := r.localClientConfig(namespace, nil)
	for _, want := range rec.Webhooks {
		for _, h := range hooks {
			if h.name != want.Name {
				continue
			}
			atRecorded := sameTarget(*h.clientConfig, want.ClientConfig)
			if !atRecorded && !sameTarget(*h.clientConfig, local) {
				othersChanged = append(othersChanged, h.name)
				continue
			}
			if !bytes.Equal(h.clientConfig.CABundle, want.ClientConfig.CABundle) {
				switch {
				case BundleHas(h.clientConfig.CABundle, localRoot), len(localRoot) == 0 && !atRecorded:
					h.clientConfig.CABundle = append([]byte(nil), want.ClientConfig.CABundle...)
					changed = true
				default:
					othersChanged = append(othersChanged, h.name+" (caBundle)")
				}
			}
			if !atRecorded {
				caBundle := h.clientConfig.CABundle
				*h.clientConfig = *want.ClientConfig.DeepCopy()
				h.clientConfig.CABundle = caBundle
				changed = true
			}
			if want.FailurePolicy != nil && !equality.Semantic.DeepEqual(*h.failurePolicy, want.FailurePolicy) {
				*h.failurePolicy = ptrCopy(want.FailurePolicy)
				changed = true
			}
		}
	}
	return changed, othersChanged
}

// IsIstioInjector reports whether a webhook configuration injects Istio sidecars.
func IsIstioInjector(mwc *admissionv1.MutatingWebhookConfiguration) bool {
	return injection.matches(mutatingHooks(mwc))
}

// IsIstioValidator reports whether a webhook configuration validates Istio
// configuration.
func IsIstioValidator(vwc *admissionv1.ValidatingWebhookConfiguration) bool {
	return validation.matches(validatingHooks(vwc))
}

// RecordInjector keeps what PointInjectorAtLocal is about to change.
func RecordInjector(mwc *admissionv1.MutatingWebhookConfiguration) WebhookConfigRecord {
	return injection.record(mwc.Name, mwc.UID, mutatingHooks(mwc))
}

// RecordValidator keeps what PointValidatorAtLocal is about to change.
func RecordValidator(vwc *admissionv1.ValidatingWebhookConfiguration) WebhookConfigRecord {
	return validation.record(vwc.Name, vwc.UID, validatingHooks(vwc))
}

// LocalInjection is the client configuration of injection by the local istiod.
func LocalInjection(namespace string, caBundle []byte) admissionv1.WebhookClientConfig {
	return injection.localClientConfig(namespace, caBundle)
}

// PointInjectorAtLocal turns the injection webhooks of mwc to the local istiod, so that
// at every moment exactly the same pods are injected, by one injector. It reports
// whether anything changed.
func PointInjectorAtLocal(mwc *admissionv1.MutatingWebhookConfiguration, namespace string, caBundle []byte) bool {
	return injection.pointAtLocal(mutatingHooks(mwc), namespace, caBundle)
}

// PointValidatorAtLocal turns the validation webhooks of vwc to the local istiod.
func PointValidatorAtLocal(vwc *admissionv1.ValidatingWebhookConfiguration, namespace string, caBundle []byte) bool {
	return validation.pointAtLocal(validatingHooks(vwc), namespace, caBundle)
}

// RestoreInjector gives the recorded injection webhooks back to the mesh control plane;
// localRoot is the local istiod's root the switch wrote into caBundles, nil when not
// known. It reports whether anything changed and what somebody else changed.
func RestoreInjector(mwc *admissionv1.MutatingWebhookConfiguration, rec WebhookConfigRecord, namespace string, localRoot []byte) (bool, []string) {
	return injection.restore(mutatingHooks(mwc), rec, namespace, localRoot)
}

// RestoreValidator gives the recorded validation webhooks back to the mesh control
// plane, as RestoreInjector does.
func RestoreValidator(vwc *admissionv1.ValidatingWebhookConfiguration, rec WebhookConfigRecord, namespace string, localRoot []byte) (bool, []string) {
	return validation.restore(validatingHooks(vwc), rec, namespace, localRoot)
}

func ptrCopy[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
