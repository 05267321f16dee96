package render

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
)

var update = flag.Bool("update", false, "rewrite the golden files from the current rendering")

func testScheme(t testing.TB) *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// chartSettings are the injector and mesh ConfigMaps that Istio's istio-discovery
// chart (the istio.io/istio module's, through internal/istiochart) renders for in's
// cluster, as the controller gives them to a cluster's istiod where the mesh cluster
// has no control plane to copy: every template of Istio's, never one of the
// operator's. Render takes whatever ConfigMaps it is given, so the golden files of
// other versions carry these too; the controller pairs them only with the chart's minor.
func chartSettings(in Inputs) MeshSettings {
	values := map[string]any{
		"global": map[string]any{
			"istioNamespace": in.Namespace,
			"hub":            in.Hub,
			"tag":            in.Version,
			"meshID":         in.MeshID,
			"network":        in.Entry.Network,
			"multiCluster":   map[string]any{"clusterName": in.ClusterID},
		},
		"meshConfig": map[string]any{"trustDomain": in.TrustDomain},
	}
	key, err := json.Marshal([]any{in.Namespace, values})
	if err != nil {
		panic(err)
	}
	if s, ok := chartSettingsCache.Load(string(key)); ok {
		return copyMeshSettings(s.(MeshSettings))
	}
	objs, err := istiochart.Render(istiochart.Discovery, "istiod", in.Namespace, values)
	if err != nil {
		panic(err)
	}
	data := func(name string) map[string]string {
		u := istiochart.Find(objs, "ConfigMap", in.Namespace, name)
		if u == nil {
			panic("Istio's chart renders no ConfigMap " + name)
		}
		d, _, err := unstructured.NestedStringMap(u.Object, "data")
		if err != nil {
			panic(err)
		}
		return d
	}
	injector, mesh := data("istio-sidecar-injector"), data("istio")
	s := MeshSettings{
		Injector: &InjectorData{Config: injector["config"], Values: injector["values"]},
		Mesh:     &MeshData{Mesh: mesh["mesh"], MeshNetworks: mesh["meshNetworks"]},
	}
	chartSettingsCache.Store(string(key), s)
	return copyMeshSettings(s)
}

var chartSettingsCache sync.Map

func copyMeshSettings(s MeshSettings) MeshSettings {
	injector, mesh := *s.Injector, *s.Mesh
	return MeshSettings{Injector: &injector, Mesh: &mesh}
}

// sampleInputs are cluster-2 on network-2, with the injector and mesh ConfigMaps of
// Istio's chart (chartSettings).
func sampleInputs(version string) Inputs {
	spec := v1beta1.ASMMeshConfigSpec{
		Version: version,
		MeshID:  "mesh-1",
		ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
			"cluster-2": {
				Replicas: ptr.To[int32](2),
				Resources: &corev1.ResourceRequirements{Requests: corev1.ResourceList{
					corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("2Gi")}},
				NodeSelector:      map[string]string{"kubernetes.io/os": "linux"},
				PriorityClassName: "system-cluster-critical",
				Network:           "network-2",
			},
		},
	}
	in := InputsFor(spec, "cluster-2", Settings{Namespace: "istio-system", Hub: "docker.io/istio"})
	in.MeshSettings = chartSettings(in)
	return in
}

func renderYAML(t *testing.T, in Inputs) []byte {
	t.Helper()
	objs, err := Render(in, testScheme(t))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	for _, o := range objs {
		raw, err := yaml.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		out.WriteString("---\n")
		out.Write(raw)
	}
	return out.Bytes()
}

// TestGolden compares the full rendering of one cluster with files reviewed by a
// person; `make golden` rewrites them after an intended change.
func TestGolden(t *testing.T) {
	for _, version := range []string{"1.22.8", "1.28.3", "1.32.0"} {
		t.Run(version, func(t *testing.T) {
			got := renderYAML(t, sampleInputs(version))
			path := filepath.Join("testdata", "istiod-"+version+".golden.yaml")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run make golden)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendering of %s differs from %s; run `make golden` if the change is intended", version, path)
			}
		})
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	in := sampleInputs("1.28.3")
	first := renderYAML(t, in)
	for range 5 {
		if !bytes.Equal(first, renderYAML(t, in)) {
			t.Fatal("two renderings of the same inputs differ")
		}
	}
}

func objectsByKind(t *testing.T, in Inputs) map[string][]client.Object {
	objs, err := Render(in, testScheme(t))
	if err != nil {
		t.Fatal(err)
	}
	byKind := map[string][]client.Object{}
	for _, o := range objs {
		kind := o.GetObjectKind().GroupVersionKind().Kind
		byKind[kind] = append(byKind[kind], o)
		if o.GetLabels()[ManagedByLabel] != ManagedByValue || o.GetLabels()[ClusterIDLabel] != in.ClusterID {
			t.Errorf("%s %s lacks the ownership labels", kind, o.GetName())
		}
	}
	return byKind
}

func TestRenderCompleteIstiod(t *testing.T) {
	byKind := objectsByKind(t, sampleInputs("1.28.3"))
	for kind, n := range map[string]int{
		"ServiceAccount": 1, "ClusterRole": 2, "ClusterRoleBinding": 2, "Role": 1, "RoleBinding": 1,
		"ConfigMap": 2, "Deployment": 1, "Service": 1, "PodDisruptionBudget": 1,
		"MutatingWebhookConfiguration": 0, "ValidatingWebhookConfiguration": 1,
	} {
		if len(byKind[kind]) != n {
			t.Errorf("want %d %s, got %d", n, kind, len(byKind[kind]))
		}
	}
	dep := byKind["Deployment"][0].(*appsv1.Deployment)
	c := dep.Spec.Template.Spec.Containers[0]
	if *dep.Spec.Replicas != 2 || c.Resources.Requests.Memory().String() != "2Gi" {
		t.Errorf("replicas/resources not taken from the entry: %d %s", *dep.Spec.Replicas, c.Resources.Requests.Memory())
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["CLUSTER_ID"] != "cluster-2" {
		t.Errorf("CLUSTER_ID = %q", env["CLUSTER_ID"])
	}
	ports := map[int32]bool{}
	for _, p := range c.Ports {
		ports[p.ContainerPort] = true
	}
	for _, p := range []int32{8080, 15010, 15012, 15014, 15017} {
		if !ports[p] {
			t.Errorf("container port %d missing", p)
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/ready" || c.ReadinessProbe.HTTPGet.Port.IntValue() != 8080 {
		t.Errorf("readiness probe: %+v", c.ReadinessProbe.HTTPGet)
	}
	if dep.Spec.Template.Spec.NodeSelector["kubernetes.io/os"] != "linux" || dep.Spec.Template.Spec.PriorityClassName != "system-cluster-critical" {
		t.Error("placement fields not taken from the entry")
	}
	mesh := byKind["ConfigMap"][0].(*corev1.ConfigMap)
	if !strings.Contains(mesh.Data["mesh"], "discoveryAddress: istiod.istio-system.svc:15012") {
		t.Errorf("mesh config does not point at the local istiod:\n%s", mesh.Data["mesh"])
	}
}

func TestNoDisruptionBudgetForOneReplica(t *testing.T) {
	in := sampleInputs("1.28.3")
	in.Entry.Replicas = ptr.To[int32](1)
	if n := len(objectsByKind(t, in)["PodDisruptionBudget"]); n != 0 {
		t.Errorf("one replica got %d PodDisruptionBudgets", n)
	}
}

func TestVersionDifferences(t *testing.T) {
	envNames := func(version string) map[string]bool {
		dep := objectsByKind(t, sampleInputs(version))["Deployment"][0].(*appsv1.Deployment)
		names := map[string]bool{}
		for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
			names[e.Name] = true
		}
		return names
	}
	if old := envNames("1.22.8"); !old["GOMEMLIMIT"] || old["CA_TRUSTED_NODE_ACCOUNTS"] {
		t.Errorf("1.22 env: %v", old)
	}
	if newer := envNames("1.32.0"); newer["GOMEMLIMIT"] || !newer["CA_TRUSTED_NODE_ACCOUNTS"] {
		t.Errorf("1.32 env: %v", newer)
	}
}

func TestParseVersion(t *testing.T) {
	for v, ok := range map[string]bool{"1.22.0": true, "1.32.1": true, "1.21.9": false, "1.33.0": false, "2.0": false, "latest": false} {
		if _, err := ParseVersion(v); (err == nil) != ok {
			t.Errorf("ParseVersion(%q) error = %v, want ok=%v", v, err, ok)
		}
	}
}

// TestRenderNeedsMeshSettings: the operator has no injection templates or mesh config
// of its own, so inputs without them are refused, naming what is missing.
func TestRenderNeedsMeshSettings(t *testing.T) {
	for name, drop := range map[string]func(*MeshSettings){
		"MeshSettings.Injector": func(s *MeshSettings) { s.Injector = nil },
		"MeshSettings.Mesh":     func(s *MeshSettings) { s.Mesh = nil },
	} {
		in := sampleInputs("1.28.3")
		drop(&in.MeshSettings)
		if _, err := Render(in, testScheme(t)); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: %v", name, err)
		}
	}
}

// TestChartTemplatesAreRendered: with the chart's ConfigMaps, the local istiod has
// every injection template of Istio's chart, byte for byte.
func TestChartTemplatesAreRendered(t *testing.T) {
	in := sampleInputs("1.28.3")
	injector := objectsByKind(t, in)["ConfigMap"][1].(*corev1.ConfigMap)
	if injector.Name != "istio-sidecar-injector" || injector.Data["config"] != in.MeshSettings.Injector.Config {
		t.Fatalf("the injector config is not the chart's as it is")
	}
	config := map[string]any{}
	if err := yaml.Unmarshal([]byte(injector.Data["config"]), &config); err != nil {
		t.Fatal(err)
	}
	templates, _ := config["templates"].(map[string]any)
	for _, name := range []string{"sidecar", "gateway", "grpc-simple", "grpc-agent", "waypoint", "kube-gateway"} {
		if _, ok := templates[name]; !ok {
			t.Errorf("template %s is missing", name)
		}
	}
}

// BenchmarkRender measures one cluster's rendering, which runs on every reconcile.
func BenchmarkRender(b *testing.B) {
	scheme := testScheme(b)
	for _, version := range []string{"1.22.8", "1.32.0"} {
		b.Run(version, func(b *testing.B) {
			in := sampleInputs(version)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Render(in, scheme); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func TestKeepTrafficInCluster(t *testing.T) {
	meshOf := func(in Inputs) string {
		return objectsByKind(t, in)["ConfigMap"][0].(*corev1.ConfigMap).Data["mesh"]
	}
	in := sampleInputs("1.28.3")
	if strings.Contains(meshOf(in), "clusterLocal") {
		t.Fatal("traffic is kept local without being asked")
	}
	in.Entry.KeepTrafficInCluster = &v1beta1.TrafficRetention{}
	if got := meshOf(in); !strings.Contains(got, "serviceSettings:\n- hosts:\n  - '*'\n  settings:\n    clusterLocal: true") {
		t.Errorf("all hosts not kept local:\n%s", got)
	}
	in.Entry.KeepTrafficInCluster.Hosts = []string{"reviews.default.svc.cluster.local"}
	if got := meshOf(in); !strings.Contains(got, "- reviews.default.svc.cluster.local") || strings.Contains(got, "'*'") {
		t.Errorf("listed hosts not kept local:\n%s", got)
	}
}

func TestInjectionWebhookCarriesCABundle(t *testing.T) {
	obj, err := InjectionWebhook(sampleInputs("1.28.3"), []byte("root-pem"), testScheme(t))
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := yaml.Marshal(obj)
	path := filepath.Join("testdata", "injection-webhook-1.28.3.golden.yaml")
	if *update {
		if err := os.WriteFile(path, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(raw, want) {
		t.Errorf("injection webhook differs from %s (%v); run make golden", path, err)
	}
}

func TestNetworkGoesToMeshNetworksAndInjection(t *testing.T) {
	byKind := objectsByKind(t, sampleInputs("1.28.3"))
	mesh := byKind["ConfigMap"][0].(*corev1.ConfigMap)
	if got := mesh.Data["meshNetworks"]; !strings.Contains(got, "network-2:\n    endpoints:\n    - fromRegistry: cluster-2") {
		t.Errorf("meshNetworks:\n%s", got)
	}
	injector := byKind["ConfigMap"][1].(*corev1.ConfigMap)
	if !strings.Contains(injector.Data["values"], `"network": "network-2"`) {
		t.Errorf("injected sidecars do not learn the network:\n%s", injector.Data["values"])
	}
	in := sampleInputs("1.28.3")
	in.Entry.Network = ""
	if got := objectsByKind(t, in)["ConfigMap"][0].(*corev1.ConfigMap).Data["meshNetworks"]; got != "networks: {}\n" {
		t.Errorf("single-network meshNetworks: %q", got)
	}
}
