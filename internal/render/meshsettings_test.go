package render

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// meshFixture returns the mesh control plane's ConfigMaps as Istio's chart renders them
// (testdata/mesh-configmaps.yaml, written by testdata/meshfixture), by name.
func meshFixture(t testing.TB) map[string]*corev1.ConfigMap {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "mesh-configmaps.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*corev1.ConfigMap{}
	for _, doc := range strings.Split(string(raw), "\n---\n")[1:] {
		cm := &corev1.ConfigMap{}
		if err := yaml.UnmarshalStrict([]byte(doc), cm); err != nil {
			t.Fatal(err)
		}
		out[cm.Name] = cm
	}
	if out["istio"] == nil || out["istio-sidecar-injector"] == nil {
		t.Fatalf("the fixture lacks a ConfigMap: %v", out)
	}
	return out
}

func settingsOf(fixture map[string]*corev1.ConfigMap) MeshSettings {
	inj, mesh := fixture["istio-sidecar-injector"].Data, fixture["istio"].Data
	return MeshSettings{
		Injector: &InjectorData{Config: inj["config"], Values: inj["values"]},
		Mesh:     &MeshData{Mesh: mesh["mesh"], MeshNetworks: mesh["meshNetworks"]},
	}
}

// meshInputs are sampleInputs (cluster-2 on network-2) with the mesh's settings copied.
func meshInputs(t testing.TB) Inputs {
	in := sampleInputs("1.28.3")
	in.MeshSettings = settingsOf(meshFixture(t))
	return in
}

// renderedConfigMaps returns the rendered mesh and injector ConfigMaps.
func renderedConfigMaps(t *testing.T, in Inputs) (mesh, injector *corev1.ConfigMap) {
	t.Helper()
	for _, o := range objectsByKind(t, in)["ConfigMap"] {
		switch o.GetName() {
		case "istio":
			mesh = o.(*corev1.ConfigMap)
		case "istio-sidecar-injector":
			injector = o.(*corev1.ConfigMap)
		}
	}
	if mesh == nil || injector == nil {
		t.Fatal("the mesh or injector ConfigMap is not rendered")
	}
	return mesh, injector
}

func jsonMap(t *testing.T, raw string) map[string]any {
	t.Helper()
	m, err := parseJSONObject(raw)
	if err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	return m
}

func yamlMap(t *testing.T, raw string) map[string]any {
	t.Helper()
	m, err := parseYAMLObject(raw)
	if err != nil {
		t.Fatalf("%v:\n%s", err, raw)
	}
	return m
}

// at returns the value at a dotted path of nested maps, and whether it is there.
func at(m map[string]any, path string) (any, bool) {
	var v any = m
	for _, k := range strings.Split(path, ".") {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = mm[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// withoutPaths returns a deep copy of m without the dotted paths.
func withoutPaths(t *testing.T, m map[string]any, paths ...string) map[string]any {
	t.Helper()
	raw, _ := json.Marshal(m)
	c := jsonMap(t, string(raw))
	for _, p := range paths {
		keys := strings.Split(p, ".")
		parent := c
		for _, k := range keys[:len(keys)-1] {
			next, ok := parent[k].(map[string]any)
			if !ok {
				parent = nil
				break
			}
			parent = next
		}
		if parent != nil {
			delete(parent, keys[len(keys)-1])
		}
	}
	return c
}

// injectorOverlay are the injector values a copy replaces or drops.
var injectorOverlay = []string{
	"global.multiCluster.clusterName", "global.network", "global.istioNamespace", "revision",
	"global.remotePilotAddress", "global.caAddress", "istiodRemote", "global.configCluster", "global.externalIstiod",
}

func TestMeshInjectorIsCopiedWithThePerClusterValues(t *testing.T) {
	fixture := meshFixture(t)
	mesh := fixture["istio-sidecar-injector"].Data
	// An external istiod's values, as some installs keep them, point at the mesh.
	source := jsonMap(t, mesh["values"])
	source["istiodRemote"] = map[string]any{"injectionURL": "https://istiod.mesh.localhost:15017/inject"}
	raw, _ := json.Marshal(source)
	in := sampleInputs("1.28.3")
	in.MeshSettings.Injector = &InjectorData{Config: mesh["config"], Values: string(raw)}

	_, injector := renderedConfigMaps(t, in)
	if injector.Data["config"] != mesh["config"] {
		t.Error("the injector config is not the mesh's, byte for byte")
	}
	for _, tmpl := range []string{"sidecar", "gateway", "grpc-simple", "grpc-agent", "waypoint", "kube-gateway"} {
		if !strings.Contains(injector.Data["config"], "\n  "+tmpl+": |") {
			t.Errorf("template %s is missing", tmpl)
		}
	}
	got := jsonMap(t, injector.Data["values"])
	for path, want := range map[string]any{
		"global.multiCluster.clusterName": "cluster-2", "global.network": "network-2",
		"global.istioNamespace": "istio-system", "revision": "",
		"global.configCluster": false, "global.externalIstiod": false,
	} {
		if v, _ := at(got, path); v != want {
			t.Errorf("%s = %v, want %v", path, v, want)
		}
	}
	for _, path := range []string{"global.remotePilotAddress", "global.caAddress", "istiodRemote"} {
		if v, ok := at(got, path); ok {
			t.Errorf("%s is kept (%v): it points at the mesh cluster", path, v)
		}
	}
	// The source had them, so the test shows they were replaced.
	for _, path := range []string{"global.remotePilotAddress", "global.caAddress", "istiodRemote"} {
		if _, ok := at(source, path); !ok {
			t.Fatalf("the fixture lacks %s", path)
		}
	}
	if !reflect.DeepEqual(withoutPaths(t, got, injectorOverlay...), withoutPaths(t, source, injectorOverlay...)) {
		t.Error("values other than the per-cluster ones changed")
	}
	// The mesh's proxy values reach injected pods: resources, log levels, images.
	for path, want := range map[string]string{
		"global.proxy.resources.requests.memory": "64Mi", "global.proxy.resources.limits.cpu": "1",
		"global.proxy.logLevel": "warning", "global.proxy.componentLogLevel": "misc:error", "global.tag": "1.28.3",
	} {
		if v, _ := at(got, path); v != want {
			t.Errorf("%s = %v, want %s", path, v, want)
		}
	}
	if !strings.Contains(injector.Data["values"], `"statusPort": 15020`) {
		t.Error("integers are not written as they were")
	}
}

func TestMeshInjectorKeepsTheMeshNetworkWithoutAnEntryNetwork(t *testing.T) {
	in := meshInputs(t)
	in.Entry.Network = ""
	_, injector := renderedConfigMaps(t, in)
	if v, _ := at(jsonMap(t, injector.Data["values"]), "global.network"); v != "network-1" {
		t.Errorf("global.network = %v, want the mesh's network-1", v)
	}
}

// meshOverlay are the mesh config fields a copy replaces.
var meshOverlay = []string{"defaultConfig.discoveryAddress"}

func TestMeshConfigIsCopiedWithTheLocalDiscoveryAddress(t *testing.T) {
	fixture := meshFixture(t)
	source := yamlMap(t, fixture["istio"].Data["mesh"])
	mesh, _ := renderedConfigMaps(t, meshInputs(t))
	got := yamlMap(t, mesh.Data["mesh"])
	if v, _ := at(got, "defaultConfig.discoveryAddress"); v != "istiod.istio-system.svc:15012" {
		t.Errorf("discoveryAddress = %v", v)
	}
	if !reflect.DeepEqual(withoutPaths(t, got, meshOverlay...), withoutPaths(t, source, meshOverlay...)) {
		t.Errorf("mesh config fields other than the per-cluster ones changed:\n%s", mesh.Data["mesh"])
	}
	for path, want := range map[string]any{
		"outboundTrafficPolicy.mode": "REGISTRY_ONLY", "accessLogFile": "/dev/stdout", "trustDomain": "mesh.example",
		"defaultConfig.proxyMetadata.ISTIO_META_DNS_CAPTURE": "true",
	} {
		if v, _ := at(got, path); v != want {
			t.Errorf("%s = %v, want %v", path, v, want)
		}
	}
	if providers, _ := got["extensionProviders"].([]any); len(providers) != 1 {
		t.Errorf("extensionProviders = %v", got["extensionProviders"])
	}
}

func TestMeshConfigOverlaysTrustDomainOnlyWhenTheSpecSetsIt(t *testing.T) {
	in := meshInputs(t)
	in.TrustDomain = "cluster.local" // the operator's default, not the spec's
	mesh, _ := renderedConfigMaps(t, in)
	if v, _ := at(yamlMap(t, mesh.Data["mesh"]), "trustDomain"); v != "mesh.example" {
		t.Errorf("trustDomain = %v, want the mesh's", v)
	}
	spec := v1beta1.ASMMeshConfigSpec{TrustDomain: "fleet.example",
		ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{"cluster-2": {}}}
	in = InputsFor(spec, "cluster-2", Settings{Namespace: "istio-system", Hub: "docker.io/istio", Version: "1.28.3"})
	in.MeshSettings = settingsOf(meshFixture(t))
	mesh, _ = renderedConfigMaps(t, in)
	if v, _ := at(yamlMap(t, mesh.Data["mesh"]), "trustDomain"); v != "fleet.example" {
		t.Errorf("trustDomain = %v, want spec.trustDomain", v)
	}
}

func TestMeshConfigMergesKeepTrafficInCluster(t *testing.T) {
	in := meshInputs(t)
	in.Entry.KeepTrafficInCluster = &v1beta1.TrafficRetention{Hosts: []string{"reviews.default.svc.cluster.local"}}
	mesh, _ := renderedConfigMaps(t, in)
	want := "serviceSettings:\n- hosts:\n  - '*.kube-system.svc.cluster.local'\n  settings:\n    clusterLocal: true\n" +
		"- hosts:\n  - reviews.default.svc.cluster.local\n  settings:\n    clusterLocal: true\n"
	if !strings.Contains(mesh.Data["mesh"], want) {
		t.Errorf("serviceSettings are not the mesh's plus the entry's:\n%s", mesh.Data["mesh"])
	}
	// The entry's settings are added once, even when the mesh already has them.
	in.MeshSettings.Mesh.Mesh = mesh.Data["mesh"]
	again, _ := renderedConfigMaps(t, in)
	if again.Data["mesh"] != mesh.Data["mesh"] {
		t.Errorf("a second overlay changed the mesh config:\n%s", again.Data["mesh"])
	}
}

func TestMeshNetworksPutTheClusterOnItsNetwork(t *testing.T) {
	fixture := meshFixture(t)
	source := yamlMap(t, fixture["istio"].Data["meshNetworks"])
	in := meshInputs(t)
	mesh, _ := renderedConfigMaps(t, in)
	// The mesh already lists cluster-2 on network-2: nothing to add.
	if got := yamlMap(t, mesh.Data["meshNetworks"]); !reflect.DeepEqual(got, source) {
		t.Errorf("meshNetworks changed:\n%s", mesh.Data["meshNetworks"])
	}
	in.Entry.Network = "network-3"
	mesh, _ = renderedConfigMaps(t, in)
	got := yamlMap(t, mesh.Data["meshNetworks"])
	if v, _ := at(got, "networks.network-3"); !reflect.DeepEqual(v, map[string]any{"endpoints": []any{map[string]any{"fromRegistry": "cluster-2"}}}) {
		t.Errorf("network-3 = %v", v)
	}
	if !reflect.DeepEqual(withoutPaths(t, got, "networks.network-3"), source) {
		t.Errorf("the mesh's other networks changed:\n%s", mesh.Data["meshNetworks"])
	}
	in.MeshSettings.Mesh.MeshNetworks = ""
	in.Entry.Network = ""
	if mesh, _ = renderedConfigMaps(t, in); mesh.Data["meshNetworks"] != "networks: {}\n" {
		t.Errorf("no meshNetworks: %q", mesh.Data["meshNetworks"])
	}
}

func TestMeshSettingsRenderDeterministically(t *testing.T) {
	in := meshInputs(t)
	first := renderYAML(t, in)
	for range 5 {
		if !bytes.Equal(first, renderYAML(t, in)) {
			t.Fatal("two renderings of the same mesh settings differ")
		}
	}
	// A change of the mesh's settings changes the rendered set, so it is applied.
	objs, _ := Render(in, testScheme(t))
	in.MeshSettings.Mesh.Mesh = strings.Replace(in.MeshSettings.Mesh.Mesh, "REGISTRY_ONLY", "ALLOW_ANY", 1)
	changed, _ := Render(in, testScheme(t))
	if Hash(objs) == Hash(changed) {
		t.Error("a changed mesh config gives the same hash")
	}
}

func TestMeshSettingsKeepTemplateText(t *testing.T) {
	in := sampleInputs("1.28.3")
	in.MeshSettings.Injector = &InjectorData{Config: "templates: {}\n",
		Values: `{"global": {"proxy": {"excludeIPRanges": "a<b&c>d"}}, "ratio": 0.1, "big": 12345678901234567890}`}
	_, injector := renderedConfigMaps(t, in)
	for _, want := range []string{`"excludeIPRanges": "a<b&c>d"`, `"ratio": 0.1`, `"big": 12345678901234567890`} {
		if !strings.Contains(injector.Data["values"], want) {
			t.Errorf("values lack %s:\n%s", want, injector.Data["values"])
		}
	}
}

func TestCheckMeshSettings(t *testing.T) {
	fixture := settingsOf(meshFixture(t))
	if err := CheckInjector(*fixture.Injector); err != nil {
		t.Errorf("Istio's injector ConfigMap: %v", err)
	}
	if err := CheckMesh(*fixture.Mesh); err != nil {
		t.Errorf("Istio's mesh ConfigMap: %v", err)
	}
	for name, d := range map[string]InjectorData{
		"values not JSON":    {Config: "templates: {}", Values: "{"},
		"values a list":      {Config: "templates: {}", Values: "[]"},
		"config not a map":   {Config: "- a", Values: "{}"},
		"config no template": {Config: "policy: enabled", Values: "{}"},
	} {
		if CheckInjector(d) == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if CheckMesh(MeshData{Mesh: "a: [", MeshNetworks: ""}) == nil || CheckMesh(MeshData{Mesh: "", MeshNetworks: "- x"}) == nil {
		t.Error("a mesh config that is not a map is accepted")
	}
}

// TestMeshSettingsGolden keeps the two ConfigMaps rendered from the mesh's in a file
// reviewed by a person; `make golden` rewrites it.
func TestMeshSettingsGolden(t *testing.T) {
	mesh, injector := renderedConfigMaps(t, meshInputs(t))
	var got bytes.Buffer
	for _, cm := range []*corev1.ConfigMap{mesh, injector} {
		raw, err := yaml.Marshal(cm)
		if err != nil {
			t.Fatal(err)
		}
		got.WriteString("---\n")
		got.Write(raw)
	}
	path := filepath.Join("testdata", "meshsettings-1.28.3.golden.yaml")
	if *update {
		if err := os.WriteFile(path, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run make golden)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("rendering from the mesh's settings differs from %s; run `make golden` if the change is intended", path)
	}
}
