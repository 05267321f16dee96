package render

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// discoveryAddress is the local istiod, which sidecars in the cluster connect to.
func (r *renderer) discoveryAddress() string {
	return fmt.Sprintf("istiod.%s.svc:15012", r.in.Namespace)
}

// meshConfigMap is the mesh ConfigMap of MeshSettings (the mesh control plane's, or
// Istio's chart's where the mesh cluster has none) with the per-cluster fields
// overlaid (see OverlayMesh and OverlayMeshNetworks). Without MeshSettings.Mesh there
// is nothing to render.
func (r *renderer) meshConfigMap() (*corev1.ConfigMap, error) {
	source := r.in.MeshSettings.Mesh
	if source == nil {
		return nil, fmt.Errorf("no mesh config (MeshSettings.Mesh): it comes from the mesh control plane's istio ConfigMap or Istio's chart")
	}
	mesh, err := OverlayMesh(source.Mesh, r.in)
	if err != nil {
		return nil, fmt.Errorf("the mesh config: %w", err)
	}
	networks, err := OverlayMeshNetworks(source.MeshNetworks, r.in)
	if err != nil {
		return nil, fmt.Errorf("the mesh networks: %w", err)
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: r.in.Namespace, Labels: r.pilotLabels(nil)},
		Data:       map[string]string{"mesh": mesh, "meshNetworks": networks},
	}, nil
}
