// Package switching holds the pure parts of moving a data-plane cluster between the
// mesh control plane and its own istiod: taking over the mesh's injection webhooks in
// place and giving them back, the record that makes this restorable, and the one-time
// restart of the cluster's gateways.
package switching

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// StateName is the ConfigMap, in the control plane namespace of the data-plane cluster,
// that records a switch. It is written before anything else changes, so a switch
// interrupted at any point can be completed or undone, also by a restarted operator.
const StateName = "remote-istiod-operator-switch"

// RestartAnnotation on a gateway's pod template names the switch it was restarted for.
const RestartAnnotation = "istio.alibabacloud.com/restarted-for"

// State is what a switch changed and must give back.
type State struct {
	SwitchedAt time.Time        `json:"switchedAt"`
	Injectors  []InjectorRecord `json:"injectors,omitempty"`
}

// InjectorRecord is a webhook configuration of the mesh control plane as it was before
// the switch.
type InjectorRecord struct {
	Name     string          `json:"name"`
	UID      types.UID       `json:"uid"`
	Webhooks []WebhookRecord `json:"webhooks"`
}

// WebhookRecord is one webhook's original client configuration.
type WebhookRecord struct {
	Name         string                          `json:"name"`
	ClientConfig admissionv1.WebhookClientConfig `json:"clientConfig"`
}

// SwitchToken and BackToken name the two gateway restarts of one switch.
func (s *State) SwitchToken() string {
	return "switch-" + s.SwitchedAt.UTC().Format("20060102T150405Z")
}

// BackToken names the restart that switching back does.
func (s *State) BackToken() string { return "back-" + s.SwitchedAt.UTC().Format("20060102T150405Z") }

// Encode writes the state into ConfigMap data.
func (s *State) Encode() (map[string]string, error) {
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	return map[string]string{"state": string(raw)}, nil
}

// Decode reads the state from a ConfigMap.
func Decode(cm *corev1.ConfigMap) (*State, error) {
	s := &State{}
	if err := json.Unmarshal([]byte(cm.Data["state"]), s); err != nil {
		return nil, fmt.Errorf("switch record %s/%s is corrupt: %w", cm.Namespace, cm.Name, err)
	}
	return s, nil
}

// isInjectorWebhook recognises Istio's injection webhooks the way istiod does: by the
// name suffix.
func isInjectorWebhook(name string) bool { return strings.HasSuffix(name, "sidecar-injector.istio.io") }

// IsIstioInjector reports whether a webhook configuration injects Istio sidecars.
func IsIstioInjector(mwc *admissionv1.MutatingWebhookConfiguration) bool {
	for _, w := range mwc.Webhooks {
		if isInjectorWebhook(w.Name) {
			return true
		}
	}
	return false
}

// Record keeps what PointAtLocal is about to change.
func Record(mwc *admissionv1.MutatingWebhookConfiguration) InjectorRecord {
	rec := InjectorRecord{Name: mwc.Name, UID: mwc.UID}
	for _, w := range mwc.Webhooks {
		if isInjectorWebhook(w.Name) {
			rec.Webhooks = append(rec.Webhooks, WebhookRecord{Name: w.Name, ClientConfig: *w.ClientConfig.DeepCopy()})
		}
	}
	return rec
}

// LocalClientConfig sends injection to the cluster's own istiod.
func LocalClientConfig(namespace string, caBundle []byte) admissionv1.WebhookClientConfig {
	return admissionv1.WebhookClientConfig{
		Service:  &admissionv1.ServiceReference{Name: "istiod", Namespace: namespace, Path: ptr.To("/inject"), Port: ptr.To[int32](443)},
		CABundle: caBundle,
	}
}

// PointAtLocal turns the injection webhooks of mwc to the local istiod, keeping their
// names, selectors and everything else, so that at every moment exactly the same pods
// are injected, by one injector. It reports whether anything changed.
func PointAtLocal(mwc *admissionv1.MutatingWebhookConfiguration, namespace string, caBundle []byte) bool {
	want := LocalClientConfig(namespace, caBundle)
	changed := false
	for i := range mwc.Webhooks {
		w := &mwc.Webhooks[i]
		if !isInjectorWebhook(w.Name) || equality.Semantic.DeepEqual(w.ClientConfig, want) {
			continue
		}
		w.ClientConfig = *want.DeepCopy()
		changed = true
	}
	return changed
}

// Restore gives the recorded webhooks their original client configuration back.
func Restore(mwc *admissionv1.MutatingWebhookConfiguration, rec InjectorRecord) bool {
	changed := false
	for _, r := range rec.Webhooks {
		for i := range mwc.Webhooks {
			w := &mwc.Webhooks[i]
			if w.Name == r.Name && !equality.Semantic.DeepEqual(w.ClientConfig, r.ClientConfig) {
				w.ClientConfig = *r.ClientConfig.DeepCopy()
				changed = true
			}
		}
	}
	return changed
}

// GatewaySelectors find the Deployments of Istio gateways: the ingress, egress and
// east-west gateways of Istio's charts and the Gateway API gateways istiod deploys.
func GatewaySelectors() []labels.Selector {
	classic, _ := labels.NewRequirement("istio", selection.In, []string{"ingressgateway", "egressgateway", "eastwestgateway"})
	managed, _ := labels.NewRequirement("gateway.istio.io/managed", selection.Equals, []string{"istio.io-gateway-controller"})
	return []labels.Selector{labels.NewSelector().Add(*classic), labels.NewSelector().Add(*managed)}
}

// MarkRestart sets the restart annotation, as `kubectl rollout restart` does; it
// reports false when the gateway was already restarted for token.
func MarkRestart(dep *appsv1.Deployment, token string) bool {
	if dep.Spec.Template.Annotations[RestartAnnotation] == token {
		return false
	}
	if dep.Spec.Template.Annotations == nil {
		dep.Spec.Template.Annotations = map[string]string{}
	}
	dep.Spec.Template.Annotations[RestartAnnotation] = token
	return true
}

// Now is the clock of switch records, second-precise so that tokens survive a round
// trip through JSON.
func Now() time.Time { return metav1.Now().Rfc3339Copy().Time }
