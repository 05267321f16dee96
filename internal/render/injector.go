package render

import (
	_ "embed"
	"encoding/json"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// SidecarTemplate is the injection template istiod renders for each injected pod.
//
//go:embed templates/sidecar.yaml
var SidecarTemplate string

// injectorConfig is the `config` key istiod's injector reads.
type injectorConfig struct {
	DefaultTemplates     []string          `json:"defaultTemplates"`
	Policy               string            `json:"policy"`
	AlwaysInjectSelector []any             `json:"alwaysInjectSelector"`
	NeverInjectSelector  []any             `json:"neverInjectSelector"`
	InjectedAnnotations  map[string]string `json:"injectedAnnotations"`
	Templates            map[string]string `json:"templates"`
}

// injectorValues are the chart values istiod's injector and its templates read.
func (r *renderer) injectorValues() map[string]any {
	return map[string]any{
		"global": map[string]any{
			"hub":               r.in.Hub,
			"tag":               r.in.Version,
			"istioNamespace":    r.in.Namespace,
			"meshID":            r.in.MeshID,
			"trustDomain":       r.in.TrustDomain,
			"network":           r.in.Entry.Network,
			"pilotCertProvider": "istiod",
			"multiCluster":      map[string]any{"clusterName": r.in.ClusterID},
			"sds":               map[string]any{"token": map[string]any{"aud": "istio-ca"}},
			"proxy": map[string]any{
				"image": "proxyv2", "clusterDomain": "cluster.local", "statusPort": 15020,
				"autoInject": "enabled", "holdApplicationUntilProxyStarts": false,
			},
			"proxy_init": map[string]any{"image": "proxyv2"},
		},
		"sidecarInjectorWebhook": map[string]any{"rewriteAppHTTPProbe": true},
		"revision":               "",
	}
}

// injectorConfigMap is the mesh control plane's injector ConfigMap with the per-cluster
// values overlaid (see OverlayInjectorValues), or, when the mesh cluster has none, the
// operator's own.
func (r *renderer) injectorConfigMap() (*corev1.ConfigMap, error) {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Namespace: r.in.Namespace, Labels: r.pilotLabels(nil)},
	}
	if mesh := r.in.MeshSettings.Injector; mesh != nil {
		values, err := OverlayInjectorValues(mesh.Values, r.in)
		if err != nil {
			return nil, fmt.Errorf("the mesh control plane's injector values: %w", err)
		}
		cm.Data = map[string]string{"config": mesh.Config, "values": values}
		return cm, nil
	}
	config, err := yaml.Marshal(injectorConfig{
		DefaultTemplates:     []string{"sidecar"},
		Policy:               "enabled",
		AlwaysInjectSelector: []any{},
		NeverInjectSelector:  []any{},
		InjectedAnnotations:  map[string]string{},
		Templates:            map[string]string{"sidecar": SidecarTemplate},
	})
	if err != nil {
		return nil, fmt.Errorf("writing injector config: %w", err)
	}
	values, err := json.MarshalIndent(r.injectorValues(), "", "  ")
	if err != nil {
		return nil, fmt.Errorf("writing injector values: %w", err)
	}
	cm.Data = map[string]string{"config": string(config), "values": string(values)}
	return cm, nil
}
