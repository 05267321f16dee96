package render

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestForeignValidatorsTurnValidationPatchingOff: where the cluster has the remote
// profile's validators, the local istiod must not patch them before the switch, so it
// runs without its validation controller and brings no validator of its own.
func TestForeignValidatorsTurnValidationPatchingOff(t *testing.T) {
	validationEnv := func(in Inputs) (*corev1.EnvVar, int) {
		byKind := objectsByKind(t, in)
		dep := byKind["Deployment"][0].(*appsv1.Deployment)
		for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
			if e.Name == "VALIDATION_WEBHOOK_CONFIG_NAME" {
				return &e, len(byKind["ValidatingWebhookConfiguration"])
			}
		}
		return nil, len(byKind["ValidatingWebhookConfiguration"])
	}
	in := sampleInputs("1.28.3")
	if env, validators := validationEnv(in); env != nil || validators != 1 {
		t.Fatalf("without foreign validators: VALIDATION_WEBHOOK_CONFIG_NAME %v, %d validators; want unset (istiod patches its own) and 1", env, validators)
	}
	in.ForeignValidators = true
	if env, validators := validationEnv(in); env == nil || env.Value != "" || validators != 0 {
		t.Fatalf("with foreign validators: VALIDATION_WEBHOOK_CONFIG_NAME %v, %d validators; want set empty and 0", env, validators)
	}
}
