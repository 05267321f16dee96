package render

import (
	"encoding/json"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// discoveryAddress is the local istiod, which sidecars in the cluster connect to.
func (r *renderer) discoveryAddress() string {
	return fmt.Sprintf("istiod.%s.svc:15012", r.in.Namespace)
}

// meshConfig is the chart's default mesh configuration for this cluster.
func (r *renderer) meshConfig() *meshv1alpha1.MeshConfig {
	proxy := &meshv1alpha1.ProxyConfig{DiscoveryAddress: r.discoveryAddress()}
	if r.in.MeshID != "" {
		proxy.MeshId = r.in.MeshID
	}
	mesh := &meshv1alpha1.MeshConfig{
		DefaultConfig:         proxy,
		DefaultProviders:      &meshv1alpha1.MeshConfig_DefaultProviders{Metrics: []string{"prometheus"}},
		EnablePrometheusMerge: wrapperspb.Bool(true),
		RootNamespace:         r.in.Namespace,
		TrustDomain:           r.in.TrustDomain,
	}
	if keep := r.in.Entry.KeepTrafficInCluster; keep != nil {
		hosts := keep.Hosts
		if len(hosts) == 0 {
			hosts = []string{"*"}
		}
		mesh.ServiceSettings = []*meshv1alpha1.MeshConfig_ServiceSettings{{
			Settings: &meshv1alpha1.MeshConfig_ServiceSettings_Settings{ClusterLocal: true},
			Hosts:    hosts,
		}}
	}
	return mesh
}

// protoYAML writes a proto message as YAML with sorted keys: protojson's output is
// deliberately unstable, so it goes through a map to be byte-for-byte reproducible.
func protoYAML(m proto.Message) (string, error) {
	raw, err := protojson.Marshal(m)
	if err != nil {
		return "", err
	}
	var generic map[string]any
	if err := json.Unmarshal(raw, &generic); err != nil {
		return "", err
	}
	out, err := yaml.Marshal(generic)
	return string(out), err
}

// meshNetworks puts the cluster's endpoints on its network, for multi-network meshes:
// the local istiod then knows which of its endpoints are reachable directly.
func (r *renderer) meshNetworks() *meshv1alpha1.MeshNetworks {
	networks := &meshv1alpha1.MeshNetworks{Networks: map[string]*meshv1alpha1.Network{}}
	if network := r.in.Entry.Network; network != "" {
		networks.Networks[network] = &meshv1alpha1.Network{Endpoints: []*meshv1alpha1.Network_NetworkEndpoints{{
			Ne: &meshv1alpha1.Network_NetworkEndpoints_FromRegistry{FromRegistry: r.in.ClusterID},
		}}}
	}
	return networks
}

// meshConfigMap is the mesh control plane's mesh ConfigMap with the per-cluster fields
// overlaid (see OverlayMesh and OverlayMeshNetworks), or, when the mesh cluster has
// none, the operator's default mesh configuration.
func (r *renderer) meshConfigMap() (*corev1.ConfigMap, error) {
	if copied := r.in.MeshSettings.Mesh; copied != nil {
		mesh, err := OverlayMesh(copied.Mesh, r.in)
		if err != nil {
			return nil, fmt.Errorf("the mesh control plane's mesh config: %w", err)
		}
		networks, err := OverlayMeshNetworks(copied.MeshNetworks, r.in)
		if err != nil {
			return nil, fmt.Errorf("the mesh control plane's mesh networks: %w", err)
		}
		return &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: r.in.Namespace, Labels: r.pilotLabels(nil)},
			Data:       map[string]string{"mesh": mesh, "meshNetworks": networks},
		}, nil
	}
	mesh, err := protoYAML(r.meshConfig())
	if err != nil {
		return nil, fmt.Errorf("writing mesh config: %w", err)
	}
	networks := "networks: {}\n"
	if len(r.meshNetworks().Networks) > 0 {
		if networks, err = protoYAML(r.meshNetworks()); err != nil {
			return nil, fmt.Errorf("writing mesh networks: %w", err)
		}
	}
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio", Namespace: r.in.Namespace, Labels: r.pilotLabels(nil)},
		Data:       map[string]string{"mesh": mesh, "meshNetworks": networks},
	}, nil
}
