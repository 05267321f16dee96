package v1beta1

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestAbandons(t *testing.T) {
	mc := &ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{
		AbandonClustersAnnotation: "cluster-3, cluster-4,,"}}}
	for id, want := range map[string]bool{"cluster-3": true, "cluster-4": true, "cluster-34": false, "cluster": false, "": false} {
		if got := mc.Abandons(id); got != want {
			t.Errorf("Abandons(%q) = %v, want %v", id, got, want)
		}
	}
	if (&ASMMeshConfig{}).Abandons("cluster-3") {
		t.Error("an ASMMeshConfig without the annotation abandons nothing")
	}
}
