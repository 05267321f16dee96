// Package install tests the two ways the operator is installed: the Helm chart in
// config/charts and the kustomize configuration in config/default.
package install

import (
	operator "github.com/meshfleet/remote-istiod-operator/internal/manager"

	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/action"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	release "helm.sh/helm/v4/pkg/release/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

const (
	chartDir = "../../config/charts/remote-istiod-operator"
	// releaseName gives the chart's objects the names config/default uses.
	releaseName = "remote-istiod-operator"
	operatorNS  = "remote-istiod-operator-system"
)

func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	return c
}

// valuesFrom parses values as `helm --values` would.
func valuesFrom(t *testing.T, values string) map[string]any {
	t.Helper()
	v := map[string]any{}
	if err := yaml.Unmarshal([]byte(values), &v); err != nil {
		t.Fatalf("parsing values: %v", err)
	}
	return v
}

// helmTemplate renders the chart as `helm template` does: client side, without CRDs.
func helmTemplate(t *testing.T, values map[string]any) []*unstructured.Unstructured {
	t.Helper()
	install := action.NewInstall(action.NewConfiguration())
	install.DryRunStrategy = action.DryRunClient
	install.ReleaseName = releaseName
	install.Namespace = operatorNS
	install.Replace = true
	rel, err := install.Run(loadChart(t), values)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	return decodeObjects(t, []byte(rel.(*release.Release).Manifest))
}

// kustomizeBuild builds config/default as `kustomize build` does.
func kustomizeBuild(t *testing.T) []*unstructured.Unstructured {
	return kustomizeBuildDir(t, "default")
}

// kustomizeBuildDir builds config/<dir> as `kustomize build` does.
func kustomizeBuildDir(t *testing.T, dir string) []*unstructured.Unstructured {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).
		Run(filesys.MakeFsOnDisk(), "../../config/"+dir)
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", dir, err)
	}
	out, err := resources.AsYaml()
	if err != nil {
		t.Fatalf("kustomize build config/%s: %v", dir, err)
	}
	return decodeObjects(t, out)
}

func decodeObjects(t *testing.T, manifest []byte) []*unstructured.Unstructured {
	t.Helper()
	var objs []*unstructured.Unstructured
	decoder := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(manifest), 4096)
	for {
		u := &unstructured.Unstructured{}
		err := decoder.Decode(&u.Object)
		if errors.Is(err, io.EOF) {
			return objs
		}
		if err != nil {
			t.Fatalf("decoding manifest: %v", err)
		}
		if len(u.Object) > 0 {
			objs = append(objs, u)
		}
	}
}

func readObjects(t *testing.T, path string) []*unstructured.Unstructured {
	t.Helper()
	data, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		t.Fatal(err)
	}
	return decodeObjects(t, data)
}

// find returns the only object of kind, failing the test when there is not exactly one.
func find(t *testing.T, objs []*unstructured.Unstructured, kind string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one %s, got %d", kind, len(found))
	}
	return found[0]
}

// findIn returns the only object of kind in namespace.
func findIn(t *testing.T, objs []*unstructured.Unstructured, kind, namespace string) *unstructured.Unstructured {
	t.Helper()
	var inNamespace []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetNamespace() == namespace {
			inNamespace = append(inNamespace, o)
		}
	}
	return find(t, inNamespace, kind)
}

// as converts an unstructured object into its typed form.
func as[T any](t *testing.T, u *unstructured.Unstructured) *T {
	t.Helper()
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("converting %s %s: %v", u.GetKind(), u.GetName(), err)
	}
	return out
}

func kindsOf(objs []*unstructured.Unstructured) []string {
	var kinds []string
	for _, o := range objs {
		if !slices.Contains(kinds, o.GetKind()) {
			kinds = append(kinds, o.GetKind())
		}
	}
	slices.Sort(kinds)
	return kinds
}

func hasFlag(arg, flag string) bool {
	return arg == flag || strings.HasPrefix(arg, flag+"=")
}

// expectPodNamespaceEnv checks that the manager learns its own namespace, where its
// leader election lease lives, from the downward API.
func expectPodNamespaceEnv(t *testing.T, c corev1.Container) {
	t.Helper()
	for _, e := range c.Env {
		if e.Name == operator.PodNamespaceEnv && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.namespace" {
			return
		}
	}
	t.Errorf("manager env %v lacks %s from metadata.namespace", c.Env, operator.PodNamespaceEnv)
}

// expectHardened checks the security settings both install methods must give the manager.
func expectHardened(t *testing.T, pod corev1.PodSpec) {
	t.Helper()
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod security context %+v, want runAsNonRoot and the RuntimeDefault seccomp profile", psc)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want the manager container alone, got %d", len(pod.Containers))
	}
	csc := pod.Containers[0].SecurityContext
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container security context %+v, want no privilege escalation, a read-only root and all capabilities dropped", csc)
	}
}

func expectProbes(t *testing.T, c corev1.Container) {
	t.Helper()
	for name, probe := range map[string]*corev1.Probe{"/healthz": c.LivenessProbe, "/readyz": c.ReadinessProbe} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != name || probe.HTTPGet.Port.IntValue() != 8081 {
			t.Errorf("probe %+v, want GET :8081%s", probe, name)
		}
	}
}

// expectMetricsServiceSelects checks that the metrics Service reaches the manager's metrics port.
func expectMetricsServiceSelects(t *testing.T, svc *unstructured.Unstructured, deploy *appsv1.Deployment) {
	t.Helper()
	service := as[corev1.Service](t, svc)
	for k, v := range service.Spec.Selector {
		if deploy.Spec.Template.Labels[k] != v {
			t.Errorf("metrics Service selects %s=%s, which the manager's pods lack", k, v)
		}
	}
	if len(service.Spec.Selector) == 0 || len(service.Spec.Ports) != 1 || service.Spec.Ports[0].Port != 8080 ||
		service.Spec.Ports[0].TargetPort.StrVal != "metrics" {
		t.Fatalf("metrics Service %+v, want port 8080 to the pods' metrics port", service.Spec)
	}
	for _, p := range deploy.Spec.Template.Spec.Containers[0].Ports {
		if p.Name == "metrics" && p.ContainerPort == 8080 {
			return
		}
	}
	t.Error("the manager has no metrics port 8080")
}
