package localmesh

import (
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// The mesh istiod's settings that differ from Istio's defaults, as
// `helm install istiod istio/istiod --values` gives them. The operator copies the mesh
// istiod's mesh config and injector values into each cluster's own istiod, so these
// show there.
const (
	// MeshOutboundTrafficPolicy is meshConfig.outboundTrafficPolicy.mode.
	MeshOutboundTrafficPolicy = "REGISTRY_ONLY"
	// MeshAccessLogFile is meshConfig.accessLogFile.
	MeshAccessLogFile = "/dev/stdout"
	// MeshProxyMemoryLimit is global.proxy.resources.limits.memory.
	MeshProxyMemoryLimit = "256Mi"
)

// MeshHub is the image registry of the mesh istiod.
const MeshHub = "docker.io/istio"

// MeshIstioVersion is the image tag of the mesh istiod: a release of the Istio minor
// whose charts render it (the charts themselves say 1.<minor>-dev, which names no
// release), within what the operator supports.
var MeshIstioVersion = fmt.Sprintf("1.%d.0", min(istiochart.Minor(), render.NewestMinor))

// meshValues are the istio-discovery values of the mesh istiod beyond the options.
func meshValues() map[string]any {
	return map[string]any{
		"meshConfig": map[string]any{
			"accessLogFile":         MeshAccessLogFile,
			"outboundTrafficPolicy": map[string]any{"mode": MeshOutboundTrafficPolicy},
		},
		"global": map[string]any{
			"proxy": map[string]any{
				"resources": map[string]any{
					"requests": map[string]any{"cpu": "50m", "memory": "64Mi"},
					"limits":   map[string]any{"cpu": "1", "memory": MeshProxyMemoryLimit},
				},
			},
		},
	}
}

// meshControlPlaneObjects are the mesh cluster's own istiod as Istio's istio-discovery
// chart renders it for a primary: the ConfigMaps istio and istio-sidecar-injector, the
// istiod Deployment and Service, its webhooks, RBAC and autoscaler.
func meshControlPlaneObjects() ([]client.Object, error) {
	objs, err := istiochart.MeshControlPlane(istiochart.MeshOptions{
		Namespace: Namespace,
		Hub:       MeshHub,
		Tag:       MeshIstioVersion,
		ClusterID: MeshClusterID,
		Network:   Network,
		MeshID:    MeshID,
		Values:    meshValues(),
	})
	if err != nil {
		return nil, fmt.Errorf("rendering the mesh istiod from Istio's istio-discovery chart: %w", err)
	}
	return unstructuredObjects(objs), nil
}
