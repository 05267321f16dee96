package controller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

func TestAppliedTrustDomain(t *testing.T) {
	mesh := func(data string) []client.Object {
		return []client.Object{&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio"}, Data: map[string]string{"mesh": data}}}
	}
	for data, want := range map[string]string{
		"trustDomain: fleet.example\n": "fleet.example",
		"accessLogFile: /dev/stdout\n": "cluster.local", // MeshConfig's default
	} {
		if got := appliedTrustDomain(mesh(data)); got != want {
			t.Errorf("%q: got %q, want %q", data, got, want)
		}
	}
	if got := appliedTrustDomain(nil); got != "" {
		t.Errorf("without a mesh config: got %q", got)
	}
}
