package render

import (
	"encoding/json"
	"fmt"
)

// ChartValues are the istio-discovery values (manifests/charts/istio-control/
// istio-discovery/values.yaml) that ask Istio's chart for what Render renders for in:
// the default revision, the cluster's name, network and mesh, the image, the entry's
// replicas, resources and placement, and no HorizontalPodAutoscaler (the operator
// renders none: the entry's replicas is the count). The conformance tests compare the
// two renderings with them; hack/fleetbench installs the chart with them.
func ChartValues(in Inputs) (map[string]any, error) {
	e := in.Entry
	resources, err := asValue(in.resources())
	if err != nil {
		return nil, err
	}
	values := map[string]any{
		"revision":         "",
		"autoscaleEnabled": false,
		"replicaCount":     int64(in.replicas()),
		"resources":        resources,
		"meshConfig":       map[string]any{"trustDomain": in.TrustDomain},
		// The operator, not istiod, keeps the injection webhooks' caBundle.
		"env": map[string]any{"INJECTION_WEBHOOK_CONFIG_NAME": ""},
		"global": map[string]any{
			"hub":               in.Hub,
			"tag":               in.Version,
			"istioNamespace":    in.Namespace,
			"meshID":            in.MeshID,
			"network":           e.Network,
			"multiCluster":      map[string]any{"clusterName": in.ClusterID},
			"priorityClassName": e.PriorityClassName,
		},
	}
	for key, field := range map[string]any{
		"nodeSelector":              nonEmpty(len(e.NodeSelector) > 0, e.NodeSelector),
		"tolerations":               nonEmpty(len(e.Tolerations) > 0, e.Tolerations),
		"affinity":                  nonEmpty(e.Affinity != nil, e.Affinity),
		"topologySpreadConstraints": nonEmpty(len(e.TopologySpreadConstraints) > 0, e.TopologySpreadConstraints),
	} {
		if field == nil {
			continue
		}
		if values[key], err = asValue(field); err != nil {
			return nil, err
		}
	}
	return values, nil
}

func nonEmpty(set bool, v any) any {
	if !set {
		return nil
	}
	return v
}

// asValue turns a typed field into the plain YAML value `helm --values` would give.
func asValue(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("chart value of %T: %w", v, err)
	}
	var out any
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, fmt.Errorf("chart value of %T: %w", v, err)
	}
	return out, nil
}
