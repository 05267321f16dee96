package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/cluster"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// readerCluster is a data-plane cluster of which fillMeshSettings reads only the API
// reader (its injectors).
type readerCluster struct {
	cluster.Cluster
	reader client.Reader
}

func (c readerCluster) GetAPIReader() client.Reader { return c.reader }

func testScheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := v1beta1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

// meshSettingsFor runs fillMeshSettings for cluster-2 against a mesh cluster holding
// meshObjects and a data-plane cluster without injectors.
func meshSettingsFor(t *testing.T, spec v1beta1.ASMMeshConfigSpec, settings render.Settings, meshObjects ...client.Object) (render.Inputs, *clusterWork, error) {
	t.Helper()
	s := testScheme(t)
	if spec.ExternalIstiodConfigurations == nil {
		spec.ExternalIstiodConfigurations = map[string]v1beta1.ExternalIstiodConfiguration{"cluster-2": {Network: "network-2"}}
	}
	r := &ClusterReconciler{Local: fake.NewClientBuilder().WithScheme(s).WithObjects(meshObjects...).Build(), Settings: settings}
	w := &clusterWork{
		id:     "cluster-2",
		mc:     &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName, Generation: 1}, Spec: spec},
		remote: readerCluster{reader: fake.NewClientBuilder().WithScheme(s).Build()},
	}
	in := render.InputsFor(spec, "cluster-2", settings)
	err := r.fillMeshSettings(context.Background(), w, &in)
	return in, w, err
}

var operatorSettings = render.Settings{Namespace: "istio-system", Hub: "docker.io/istio"}

func yamlMap(t *testing.T, raw string) map[string]any {
	t.Helper()
	out := map[string]any{}
	if err := yaml.Unmarshal([]byte(raw), &out); err != nil {
		t.Fatalf("%v\n%s", err, raw)
	}
	return out
}

// TestChartSourceWhereTheMeshHasNoConfigMaps: without a mesh control plane to copy, the
// local istiod gets the injector and mesh ConfigMaps of Istio's own istio-discovery
// chart, every template of it, at the chart's version, with the per-cluster overlay.
func TestChartSourceWhereTheMeshHasNoConfigMaps(t *testing.T) {
	in, w, err := meshSettingsFor(t, v1beta1.ASMMeshConfigSpec{MeshID: "mesh-1"}, operatorSettings)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("1.%d.0", istiochart.Minor()); in.Version != want {
		t.Errorf("version %s, want the chart's %s", in.Version, want)
	}
	for _, want := range []string{
		"nothing copied from the mesh control plane (revision default",
		"injector config from Istio's istio-discovery chart " + istiochart.Version() + " in this operator: the mesh cluster has no ConfigMap istio-system/istio-sidecar-injector",
		"mesh config from Istio's istio-discovery chart " + istiochart.Version() + " in this operator: the mesh cluster has no ConfigMap istio-system/istio",
		"Istio " + in.Version + " from Istio's istio-discovery chart " + istiochart.Version() + " in this operator: the mesh cluster has no Deployment istio-system/istiod",
	} {
		if !strings.Contains(w.status.MeshSettings, want) {
			t.Errorf("meshSettings %q does not say %q", w.status.MeshSettings, want)
		}
	}

	objs, err := render.Render(in, testScheme(t))
	if err != nil {
		t.Fatal(err)
	}
	local := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		if cm, ok := o.(*corev1.ConfigMap); ok {
			local[cm.Name] = cm
		}
	}
	chart, err := istiochart.Render(istiochart.Discovery, "istiod", "istio-system", map[string]any{
		"global": map[string]any{"hub": "docker.io/istio", "tag": in.Version}})
	if err != nil {
		t.Fatal(err)
	}
	chartInjector := istiochart.Find(chart, "ConfigMap", "istio-system", "istio-sidecar-injector")
	if chartInjector == nil {
		t.Fatal("Istio's chart renders no istio-sidecar-injector")
	}
	chartConfig, _, _ := unstructured.NestedString(chartInjector.Object, "data", "config")
	chartTemplates, _ := yamlMap(t, chartConfig)["templates"].(map[string]any)
	if len(chartTemplates) == 0 {
		t.Fatal("the chart's injector config has no templates")
	}
	injector := local["istio-sidecar-injector"]
	if injector == nil {
		t.Fatal("no ConfigMap istio-sidecar-injector rendered")
	}
	templates, _ := yamlMap(t, injector.Data["config"])["templates"].(map[string]any)
	for _, name := range []string{"sidecar", "gateway", "grpc-agent", "grpc-simple", "waypoint", "kube-gateway"} {
		if _, ok := chartTemplates[name]; !ok {
			t.Errorf("Istio's chart has no template %s", name)
		}
	}
	for name, body := range chartTemplates {
		if templates[name] != body {
			t.Errorf("template %s of Istio's chart is not the local istiod's as it is", name)
		}
	}
	if injector.Data["config"] != chartConfig {
		t.Error("the injector config is not the chart's byte for byte")
	}
	values := map[string]any{}
	if err := yaml.Unmarshal([]byte(injector.Data["values"]), &values); err != nil {
		t.Fatal(err)
	}
	global, _ := values["global"].(map[string]any)
	multiCluster, _ := global["multiCluster"].(map[string]any)
	if multiCluster["clusterName"] != "cluster-2" || global["network"] != "network-2" || global["meshID"] != "mesh-1" ||
		global["tag"] != in.Version || global["hub"] != "docker.io/istio" {
		t.Errorf("injector values do not name the cluster, network, mesh and image: %v", global)
	}
	mesh := yamlMap(t, local["istio"].Data["mesh"])
	defaultConfig, _ := mesh["defaultConfig"].(map[string]any)
	if defaultConfig["discoveryAddress"] != "istiod.istio-system.svc:15012" || defaultConfig["meshId"] != "mesh-1" || mesh["trustDomain"] != "cluster.local" {
		t.Errorf("mesh config is not the chart's for this cluster: %v", mesh)
	}
	if !strings.Contains(local["istio"].Data["meshNetworks"], "fromRegistry: cluster-2") {
		t.Errorf("meshNetworks lack the cluster's endpoints: %s", local["istio"].Data["meshNetworks"])
	}
}

// TestMeshConfigMapsWinOverTheChart: a part the mesh cluster has is copied; only the
// other comes from the chart.
func TestMeshConfigMapsWinOverTheChart(t *testing.T) {
	meshCM := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio"},
		Data: map[string]string{"mesh": "accessLogFile: /dev/stdout\n", "meshNetworks": "networks: {}\n"}}
	in, w, err := meshSettingsFor(t, v1beta1.ASMMeshConfigSpec{}, operatorSettings, meshCM)
	if err != nil {
		t.Fatal(err)
	}
	if in.MeshSettings.Mesh == nil || in.MeshSettings.Mesh.Mesh != meshCM.Data["mesh"] {
		t.Errorf("the mesh's mesh config is not the one used: %+v", in.MeshSettings.Mesh)
	}
	if in.MeshSettings.Injector == nil || !strings.Contains(in.MeshSettings.Injector.Config, "grpc-agent") {
		t.Error("the injector config is not the chart's")
	}
	if !strings.HasPrefix(w.status.MeshSettings, "mesh config copied from istio-system/istio (revision default") ||
		!strings.Contains(w.status.MeshSettings, "injector config from Istio's istio-discovery chart") {
		t.Errorf("meshSettings %q", w.status.MeshSettings)
	}
}

// TestVersionOrder: spec.version, then the mesh istiod's, then the flag when set, then
// the chart's.
func TestVersionOrder(t *testing.T) {
	istiod := func(tag string) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istiod"}}
		d.Spec.Template.Spec.Containers = []corev1.Container{{Name: "discovery", Image: "docker.io/istio/pilot:" + tag}}
		return d
	}
	chart := fmt.Sprintf("1.%d.0", istiochart.Minor())
	same := fmt.Sprintf("1.%d.4", istiochart.Minor())
	flagged := render.Settings{Namespace: "istio-system", Hub: "docker.io/istio", Version: fmt.Sprintf("1.%d.2", istiochart.Minor())}
	for name, tc := range map[string]struct {
		spec     string
		settings render.Settings
		mesh     []client.Object
		want     string
		source   string
	}{
		"spec.version wins":            {spec: same, settings: flagged, mesh: []client.Object{istiod(fmt.Sprintf("1.%d.1", istiochart.Minor()))}, want: same, source: "from spec.version"},
		"the mesh istiod's":            {settings: flagged, mesh: []client.Object{istiod(same)}, want: same, source: "from the mesh istiod istio-system/istiod"},
		"the flag where it is set":     {settings: flagged, want: flagged.Version, source: "from the operator's --istio-version flag: the mesh cluster has no Deployment"},
		"the chart's without the flag": {settings: operatorSettings, want: chart, source: "from Istio's istio-discovery chart " + istiochart.Version()},
		"the chart's for an odd image": {settings: operatorSettings, mesh: []client.Object{istiod("latest")}, want: chart, source: "does not name a supported release"},
	} {
		in, w, err := meshSettingsFor(t, v1beta1.ASMMeshConfigSpec{Version: tc.spec}, tc.settings, tc.mesh...)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if in.Version != tc.want || !strings.Contains(w.status.MeshSettings, "Istio "+tc.want+" from ") || !strings.Contains(w.status.MeshSettings, tc.source) {
			t.Errorf("%s: version %s (%q), want %s %s", name, in.Version, w.status.MeshSettings, tc.want, tc.source)
		}
	}
}

// TestNoTemplateSource: a version of another minor than the chart's, with nothing to
// copy from the mesh, has no source of templates: the cluster is told so and nothing is
// rendered.
func TestNoTemplateSource(t *testing.T) {
	other := fmt.Sprintf("1.%d.3", istiochart.Minor()-3)
	in, w, err := meshSettingsFor(t, v1beta1.ASMMeshConfigSpec{Version: other}, operatorSettings)
	var noSource *noTemplateSourceError
	if !errors.As(err, &noSource) {
		t.Fatalf("fillMeshSettings = %v, want a noTemplateSourceError", err)
	}
	if in.MeshSettings.Injector != nil || in.MeshSettings.Mesh != nil {
		t.Error("mesh settings were filled without a source")
	}
	for _, want := range []string{
		"Istio " + other + " (from spec.version)",
		"istio-system/istio-sidecar-injector and istio-system/istio",
		"chart in this operator is " + istiochart.Version(),
		fmt.Sprintf("set spec.version to 1.%d.x", istiochart.Minor()),
		fmt.Sprintf("install Istio 1.%d in the mesh cluster", istiochart.Minor()-3),
		"nothing new is applied",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not say %q", err, want)
		}
	}
	if !strings.Contains(w.status.MeshSettings, "no source for Istio "+other) {
		t.Errorf("meshSettings %q", w.status.MeshSettings)
	}

	// The mesh control plane's ConfigMaps are a source of any version.
	injector := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio-sidecar-injector"},
		Data: map[string]string{"config": "templates:\n  sidecar: x\n", "values": "{}"}}
	meshCM := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "istio-system", Name: "istio"},
		Data: map[string]string{"mesh": "{}\n"}}
	if _, _, err := meshSettingsFor(t, v1beta1.ASMMeshConfigSpec{Version: other}, operatorSettings, injector, meshCM); err != nil {
		t.Errorf("with the mesh's ConfigMaps: %v", err)
	}
	// One of them missing is a part without source.
	if _, _, err := meshSettingsFor(t, v1beta1.ASMMeshConfigSpec{Version: other}, operatorSettings, injector); !errors.As(err, &noSource) ||
		!strings.Contains(err.Error(), "ConfigMap istio-system/istio of") {
		t.Errorf("without the mesh ConfigMap: %v", err)
	}
}

// TestNoTemplateSourceStalls: the condition needs a person.
func TestNoTemplateSourceStalls(t *testing.T) {
	mc := meshConfigWith(2, []string{"a"}, clusterEntry("a", 2, false, ReasonNoTemplateSource, "no templates"))
	if conditionOf(aggregate(mc), v1beta1.ConditionStalled).Status != metav1.ConditionTrue {
		t.Error("no template source needs a person: Stalled")
	}
}
