package controller

import (
	"encoding/json"
	"fmt"
	"sync"

	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// chartVersion is the Istio release a cluster's istiod runs when nothing names one: the
// minor of Istio's charts in this build (istiochart.Minor), patch 0.
func chartVersion() string { return fmt.Sprintf("1.%d.0", istiochart.Minor()) }

// chartHasTemplates reports whether Istio's istio-discovery chart in this build is a
// source of the injection templates and mesh config of the Istio release version: only
// of its own minor. The chart carries one Istio version; the templates of another
// release are only in that release's chart.
func chartHasTemplates(version string) bool {
	v, err := render.ParseVersion(version)
	return err == nil && v.Minor == istiochart.Minor()
}

// ChartMeshSettings are the injector and mesh ConfigMaps that Istio's istio-discovery
// chart in this build renders for a cluster's istiod, as
//
//	helm template istiod istio/istiod -n <namespace> --set global.hub=<hub> --set global.tag=<version> \
//	  --set global.multiCluster.clusterName=<cluster ID> --set global.network=<network> \
//	  --set global.meshID=<mesh ID> --set meshConfig.trustDomain=<trust domain>
//
// renders them for the default revision: every injection template of Istio's chart
// (sidecar, gateway, grpc-agent, grpc-simple, waypoint, kube-gateway, ...), its injector
// values and its default mesh config. They are what a cluster's istiod gets where the
// mesh cluster has no control plane to copy, and they go through the same per-cluster
// overlay as the mesh control plane's. Only the chart's own minor has them
// (chartHasTemplates).
func ChartMeshSettings(in render.Inputs) (render.MeshSettings, error) {
	global := map[string]any{
		"istioNamespace": in.Namespace,
		"hub":            in.Hub,
		"tag":            in.Version,
		"multiCluster":   map[string]any{"clusterName": in.ClusterID},
	}
	if in.Entry.Network != "" {
		global["network"] = in.Entry.Network
	}
	if in.MeshID != "" {
		global["meshID"] = in.MeshID
	}
	values := map[string]any{"global": global, "meshConfig": map[string]any{"trustDomain": in.TrustDomain}}
	key, err := json.Marshal(map[string]any{"namespace": in.Namespace, "values": values})
	if err != nil {
		return render.MeshSettings{}, err
	}
	return chartSettings.get(string(key), func() (render.MeshSettings, error) {
		objs, err := istiochart.Render(istiochart.Discovery, "istiod", in.Namespace, values)
		if err != nil {
			return render.MeshSettings{}, err
		}
		data := func(name string) (map[string]string, error) {
			u := istiochart.Find(objs, "ConfigMap", in.Namespace, name)
			if u == nil {
				return nil, fmt.Errorf("the %s chart of Istio %s renders no ConfigMap %s", istiochart.Discovery, istiochart.Version(), name)
			}
			d := map[string]string{}
			raw, _ := u.Object["data"].(map[string]any)
			for k, v := range raw {
				s, ok := v.(string)
				if !ok {
					return nil, fmt.Errorf("ConfigMap %s of Istio's %s chart has a key %s that is no string", name, istiochart.Discovery, k)
				}
				d[k] = s
			}
			return d, nil
		}
		injector, err := data("istio-sidecar-injector")
		if err != nil {
			return render.MeshSettings{}, err
		}
		mesh, err := data("istio")
		if err != nil {
			return render.MeshSettings{}, err
		}
		out := render.MeshSettings{
			Injector: &render.InjectorData{Config: injector["config"], Values: injector["values"]},
			Mesh:     &render.MeshData{Mesh: mesh["mesh"], MeshNetworks: mesh["meshNetworks"]},
		}
		if err := render.CheckInjector(*out.Injector); err != nil {
			return render.MeshSettings{}, fmt.Errorf("the injector ConfigMap of Istio's %s chart: %w", istiochart.Discovery, err)
		}
		if err := render.CheckMesh(*out.Mesh); err != nil {
			return render.MeshSettings{}, fmt.Errorf("the mesh ConfigMap of Istio's %s chart: %w", istiochart.Discovery, err)
		}
		return out, nil
	})
}

// chartSettings keeps what the chart rendered for each set of values: rendering takes
// tens of milliseconds, and every reconcile of a cluster without a mesh control plane
// to copy asks again for the same values.
var chartSettings = &settingsCache{entries: map[string]render.MeshSettings{}}

// maxChartSettings bounds the cache: one entry per cluster and version in use.
const maxChartSettings = 256

type settingsCache struct {
	mu      sync.Mutex
	entries map[string]render.MeshSettings
}

func (c *settingsCache) get(key string, fill func() (render.MeshSettings, error)) (render.MeshSettings, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.entries[key]; ok {
		return copySettings(s), nil
	}
	s, err := fill()
	if err != nil {
		return render.MeshSettings{}, err
	}
	if len(c.entries) >= maxChartSettings {
		clear(c.entries)
	}
	c.entries[key] = s
	return copySettings(s), nil
}

// copySettings copies the parts, so that no caller changes the cached ones.
func copySettings(s render.MeshSettings) render.MeshSettings {
	out := render.MeshSettings{}
	if s.Injector != nil {
		i := *s.Injector
		out.Injector = &i
	}
	if s.Mesh != nil {
		m := *s.Mesh
		out.Mesh = &m
	}
	return out
}
