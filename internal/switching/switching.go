// Package switching holds the pure parts of moving a data-plane cluster between the
// mesh control plane and its own istiod: taking over the mesh's injection and validation
// webhooks in place and giving them back, naming the cluster's own istiod as its leader,
// the record that makes all this restorable, and the one-time restart of the cluster's
// gateways.
package switching

import (
	"encoding/json"
	"fmt"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/types"
)

// StateName is the ConfigMap, in the control plane namespace of the data-plane cluster,
// that records a switch. It is written before anything else changes, so a switch
// interrupted at any point can be completed or undone, also by a restarted operator.
const StateName = "remote-istiod-operator-switch"

// RestartAnnotation on a gateway's pod template names the switch it was restarted for.
const RestartAnnotation = "istio.alibabacloud.com/restarted-for"

// State is what a switch changed and must give back.
type State struct {
	SwitchedAt time.Time `json:"switchedAt"`
	// Injectors and Validators are the mesh control plane's webhook configurations
	// the switch pointed at the local istiod.
	Injectors  []WebhookConfigRecord `json:"injectors,omitempty"`
	Validators []WebhookConfigRecord `json:"validators,omitempty"`
	// Lead is the control plane namespace's topology.istio.io/controlPlaneClusters
	// annotation before the switch; nil in records written before it was kept.
	Lead *AnnotationRecord `json:"lead,omitempty"`
	// Address is Service istiod, the cluster's control plane address, before the
	// switch made it lead to the local istiod; nil when the cluster had none (the
	// operator then rendered its own) and in records written before it was kept.
	Address *AddressRecord `json:"address,omitempty"`
}

// WebhookConfigRecord is a webhook configuration of the mesh control plane as it was
// before the switch.
type WebhookConfigRecord struct {
	Name     string          `json:"name"`
	UID      types.UID       `json:"uid"`
	Webhooks []WebhookRecord `json:"webhooks"`
}

// WebhookRecord is one webhook's original client configuration and failure policy.
type WebhookRecord struct {
	Name          string                          `json:"name"`
	ClientConfig  admissionv1.WebhookClientConfig `json:"clientConfig"`
	FailurePolicy *admissionv1.FailurePolicyType  `json:"failurePolicy,omitempty"`
}

// AnnotationRecord is an annotation as it was: absent, or present with a value.
type AnnotationRecord struct {
	Present bool   `json:"present"`
	Value   string `json:"value,omitempty"`
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

// Rollout says how far a gateway's restart for a token has come.
type Rollout int

const (
	// RolloutDone: every replica runs the restarted template (or the Deployment no
	// longer carries the token: somebody rolled it again, which moves it too).
	RolloutDone Rollout = iota
	// RolloutProgressing: old pods are still there.
	RolloutProgressing
	// RolloutStuck: the Deployment's own progress deadline passed; waiting longer
	// would hold the switch-back for a gateway that cannot roll out at all.
	RolloutStuck
)

// RolloutOf reads a gateway's rollout of the restart for token as the Deployment
// controller reports it, like `kubectl rollout status`.
func RolloutOf(dep *appsv1.Deployment, token string) Rollout {
	if dep.Spec.Template.Annotations[RestartAnnotation] != token {
		return RolloutDone
	}
	for _, c := range dep.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return RolloutStuck
		}
	}
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	s := dep.Status
	if s.ObservedGeneration >= dep.Generation && s.UpdatedReplicas >= want && s.Replicas == s.UpdatedReplicas && s.AvailableReplicas >= want {
		return RolloutDone
	}
	return RolloutProgressing
}
