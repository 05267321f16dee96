package render

import (
	"bytes"
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// MeshSettings are the injector and mesh configuration of a cluster's istiod: the mesh
// control plane's own, copied from its ConfigMaps in the mesh cluster, or, where the
// mesh cluster has none, what Istio's istio-discovery chart renders (the controller
// fills them). The local istiod then injects and configures sidecars exactly as the
// mesh istiod does (every injection template, the mesh's meshConfig and proxy values),
// with only the fields that name a cluster replaced. Both parts are required: the
// operator has no templates of its own.
type MeshSettings struct {
	// Injector is the data of istio-sidecar-injector[-<revision>].
	Injector *InjectorData
	// Mesh is the data of istio[-<revision>].
	Mesh *MeshData
}

// InjectorData are the keys of Istio's injector ConfigMap.
type InjectorData struct {
	// Config is the `config` key (YAML): templates, defaultTemplates, policy, selectors,
	// injectedAnnotations and aliases. It is copied unchanged.
	Config string
	// Values is the `values` key (JSON): the chart values the templates read.
	Values string
}

// MeshData are the keys of Istio's mesh ConfigMap.
type MeshData struct {
	// Mesh is the `mesh` key (YAML MeshConfig).
	Mesh string
	// MeshNetworks is the `meshNetworks` key (YAML MeshNetworks); empty when absent.
	MeshNetworks string
}

// Values of the mesh's injector that point at the mesh cluster or its istiod. They are
// dropped, so that injected sidecars get the defaults that lead to the local istiod:
// CA_ADDR then defaults to istiod.<namespace>.svc:15012.
var (
	droppedGlobalValues = []string{"remotePilotAddress", "caAddress"}
	droppedValues       = []string{"istiodRemote"}
	// falseGlobalValues describe the mesh cluster's role, which the local istiod does
	// not have: it is its cluster's own config cluster, not an external istiod.
	falseGlobalValues = []string{"configCluster", "externalIstiod"}
)

// CheckInjector reports whether the mesh's injector data can be copied: config must be
// a YAML map and values a JSON object.
func CheckInjector(d InjectorData) error {
	var config map[string]any
	if err := yaml.Unmarshal([]byte(d.Config), &config); err != nil {
		return fmt.Errorf("key config is not YAML: %w", err)
	}
	if _, ok := config["templates"]; !ok {
		return fmt.Errorf("key config has no templates")
	}
	if _, err := parseJSONObject(d.Values); err != nil {
		return fmt.Errorf("key values is not a JSON object: %w", err)
	}
	return nil
}

// CheckMesh reports whether the mesh's mesh data can be copied: both keys must be YAML
// maps (meshNetworks may be empty).
func CheckMesh(d MeshData) error {
	if _, err := parseYAMLObject(d.Mesh); err != nil {
		return fmt.Errorf("key mesh is not a YAML map: %w", err)
	}
	if _, err := parseYAMLObject(d.MeshNetworks); err != nil {
		return fmt.Errorf("key meshNetworks is not a YAML map: %w", err)
	}
	return nil
}

// OverlayInjectorValues returns the mesh's injector values with the per-cluster fields
// of in: global.multiCluster.clusterName is the cluster ID, global.network the entry's
// network (the mesh's when the entry has none), global.istioNamespace the local control
// plane namespace and revision the local istiod's (default, written ""); the values that
// point at the mesh cluster (global.remotePilotAddress, global.caAddress, istiodRemote)
// are dropped and global.configCluster and global.externalIstiod are false. Everything
// else is kept as it is. The output is indented JSON with sorted keys, as Istio's chart
// writes it (toPrettyJson), so equal inputs give equal bytes.
func OverlayInjectorValues(values string, in Inputs) (string, error) {
	v, err := parseJSONObject(values)
	if err != nil {
		return "", err
	}
	for _, k := range droppedValues {
		delete(v, k)
	}
	global := childMap(v, "global")
	for _, k := range droppedGlobalValues {
		delete(global, k)
	}
	for _, k := range falseGlobalValues {
		global[k] = false
	}
	childMap(global, "multiCluster")["clusterName"] = in.ClusterID
	if in.Entry.Network != "" {
		global["network"] = in.Entry.Network
	}
	global["istioNamespace"] = in.Namespace
	// The injected CA_ADDR and labels name istiod[-<revision>]: the local istiod is
	// always the default revision, Service istiod.
	v["revision"] = ""
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // templates hold <, > and &: keep them readable
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return out.String(), nil
}

// OverlayMesh returns the mesh's mesh config with the per-cluster fields of in:
// defaultConfig.discoveryAddress is the local istiod (istiod.<namespace>.svc:15012),
// the entry's keepTrafficInCluster is added to serviceSettings, and the ASMMeshConfig's
// trust domain replaces the mesh's only when spec.trustDomain is set. Everything else
// (outboundTrafficPolicy, accessLogFile, extensionProviders, defaultConfig.proxyMetadata,
// ...) is kept. The output is YAML with sorted keys.
func OverlayMesh(mesh string, in Inputs) (string, error) {
	m, err := parseYAMLObject(mesh)
	if err != nil {
		return "", err
	}
	r := &renderer{in: in}
	childMap(m, "defaultConfig")["discoveryAddress"] = r.discoveryAddress()
	if in.TrustDomainSet {
		m["trustDomain"] = in.TrustDomain
	}
	if keep := r.keptLocal(); keep != nil {
		settings, _ := m["serviceSettings"].([]any)
		if !containsEqual(settings, keep) {
			m["serviceSettings"] = append(settings, keep)
		}
	}
	out, err := yaml.Marshal(m)
	return string(out), err
}

// OverlayMeshNetworks returns the mesh's meshNetworks with the cluster's endpoints on
// the entry's network (fromRegistry: the cluster ID), so that the local istiod knows
// which of its endpoints are reachable directly; the mesh's other networks, gateways and
// endpoints are kept. Without an entry network
// the mesh's meshNetworks are kept as they are ("networks: {}" when it has none).
func OverlayMeshNetworks(networks string, in Inputs) (string, error) {
	n, err := parseYAMLObject(networks)
	if err != nil {
		return "", err
	}
	all := childMap(n, "networks")
	if network := in.Entry.Network; network != "" {
		net := childMap(all, network)
		endpoints, _ := net["endpoints"].([]any)
		own := map[string]any{"fromRegistry": in.ClusterID}
		if !containsEqual(endpoints, own) {
			net["endpoints"] = append(endpoints, own)
		}
	}
	out, err := yaml.Marshal(n)
	return string(out), err
}

// keptLocal is the serviceSettings entry of the entry's keepTrafficInCluster, or nil.
func (r *renderer) keptLocal() map[string]any {
	keep := r.in.Entry.KeepTrafficInCluster
	if keep == nil {
		return nil
	}
	hosts := []any{}
	for _, h := range keep.Hosts {
		hosts = append(hosts, h)
	}
	if len(hosts) == 0 {
		hosts = []any{"*"}
	}
	return map[string]any{"settings": map[string]any{"clusterLocal": true}, "hosts": hosts}
}

// parseJSONObject reads a JSON object keeping numbers as written (json.Number), so
// that copying never changes an integer or a decimal.
func parseJSONObject(raw string) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, fmt.Errorf("trailing data after the JSON object")
	}
	if v == nil {
		v = map[string]any{}
	}
	return v, nil
}

// parseYAMLObject reads a YAML map (empty text is an empty map), numbers kept as
// written.
func parseYAMLObject(raw string) (map[string]any, error) {
	var v map[string]any
	if err := yaml.Unmarshal([]byte(raw), &v, func(d *json.Decoder) *json.Decoder {
		d.UseNumber()
		return d
	}); err != nil {
		return nil, err
	}
	if v == nil {
		v = map[string]any{}
	}
	return v, nil
}

// childMap returns m[key] as a map, replacing whatever else is there with an empty one.
func childMap(m map[string]any, key string) map[string]any {
	if c, ok := m[key].(map[string]any); ok {
		return c
	}
	c := map[string]any{}
	m[key] = c
	return c
}

// containsEqual reports whether list holds an element equal to v, compared as JSON.
func containsEqual(list []any, v any) bool {
	want, _ := json.Marshal(v)
	for _, e := range list {
		got, _ := json.Marshal(e)
		if bytes.Equal(got, want) {
			return true
		}
	}
	return false
}
