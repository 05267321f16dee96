package render

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// injectorConfigMap is the injector ConfigMap of MeshSettings (the mesh control
// plane's, or Istio's chart's where the mesh cluster has none) with the per-cluster
// values overlaid (see OverlayInjectorValues). The operator has no injection template
// of its own: without MeshSettings.Injector there is nothing to render.
func (r *renderer) injectorConfigMap() (*corev1.ConfigMap, error) {
	source := r.in.MeshSettings.Injector
	if source == nil {
		return nil, fmt.Errorf("no injector config (MeshSettings.Injector): the injection templates come from the mesh control plane's istio-sidecar-injector ConfigMap or Istio's chart")
	}
	values, err := OverlayInjectorValues(source.Values, r.in)
	if err != nil {
		return nil, fmt.Errorf("the injector values: %w", err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Namespace: r.in.Namespace, Labels: r.pilotLabels(nil)},
		Data:       map[string]string{"config": source.Config, "values": values},
	}, nil
}
