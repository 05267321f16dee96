package install

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	operator "github.com/meshfleet/remote-istiod-operator/internal/manager"
)

// customValues sets every value the chart has to something other than its default.
const customValues = `
image: {repository: registry.example.com/mesh/remote-istiod-operator, tag: v9.9.9, pullPolicy: Always}
imagePullSecrets: [{name: pull-secret}]
replicas: 3
controlPlaneNamespace: mesh-system
istio: {hub: registry.example.com/istio, version: 1.30.1}
logLevel: debug
extraArgs: [--cluster-workers=16, --allow-exec-credentials]
resources: {requests: {cpu: 250m, memory: 256Mi}, limits: {memory: 1Gi}}
nodeSelector: {kubernetes.io/os: linux}
tolerations: [{key: dedicated, operator: Equal, value: mesh, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: pool, operator: In, values: [system]}]}]}}}
podAnnotations: {example.com/team: mesh}
serviceMonitor: {enabled: true, interval: 15s, labels: {release: prometheus}}
fullnameOverride: mesh-operator
`

func TestChartLintsCleanly(t *testing.T) {
	for name, values := range map[string]map[string]any{
		"defaults": {},
		"custom":   valuesFrom(t, customValues),
	} {
		t.Run(name, func(t *testing.T) {
			result := lint.RunAll(chartDir, values, operatorNS)
			for _, m := range result.Messages {
				// Like `helm lint --strict`: warnings fail too.
				if m.Severity >= support.WarningSev {
					t.Error(m.Error())
				}
			}
		})
	}
}

func TestChartDefaults(t *testing.T) {
	objs := helmTemplate(t, nil)
	deploy := as[appsv1.Deployment](t, find(t, objs, "Deployment"))
	pod := deploy.Spec.Template.Spec
	manager := pod.Containers[0]

	if want := "remote-istiod-operator:" + loadChart(t).Metadata.AppVersion; manager.Image != want {
		t.Errorf("image %q, want %q (the chart's appVersion)", manager.Image, want)
	}
	if *deploy.Spec.Replicas != 2 {
		t.Errorf("replicas %d, want 2", *deploy.Spec.Replicas)
	}
	for _, arg := range []string{"--leader-elect", "--control-plane-namespace=istio-system", "--zap-log-level=info",
		"--health-probe-bind-address=:8081", "--metrics-bind-address=:8080"} {
		if !slices.Contains(manager.Args, arg) {
			t.Errorf("args %v lack %s", manager.Args, arg)
		}
	}
	for _, arg := range manager.Args {
		if hasFlag(arg, "--istio-hub") || hasFlag(arg, "--istio-version") {
			t.Errorf("arg %s: the operator's own Istio defaults should apply", arg)
		}
	}
	expectHardened(t, pod)
	expectProbes(t, manager)
	// A stopping replica finishes its reconciles and releases its lease before the
	// kubelet kills it.
	if grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second; grace <= operator.GracefulShutdownTimeout {
		t.Errorf("termination grace period %s does not leave room for the manager's graceful shutdown of %s", grace, operator.GracefulShutdownTimeout)
	}
	if got := manager.Resources.Requests[corev1.ResourceMemory]; got.Cmp(resource.MustParse("128Mi")) != 0 {
		t.Errorf("memory request %s, want 128Mi", got.String())
	}
	findIn(t, objs, "Role", "istio-system")
	findIn(t, objs, "Role", operatorNS) // the leader election lease's
	expectPodNamespaceEnv(t, manager)
	if kinds := kindsOf(objs); slices.Contains(kinds, "ServiceMonitor") {
		t.Error("a ServiceMonitor is rendered although serviceMonitor.enabled is false")
	}
	expectMetricsServiceSelects(t, find(t, objs, "Service"), deploy)
}

func TestChartCustomValues(t *testing.T) {
	objs := helmTemplate(t, valuesFrom(t, customValues))
	deploy := as[appsv1.Deployment](t, find(t, objs, "Deployment"))
	pod := deploy.Spec.Template.Spec
	manager := pod.Containers[0]

	if deploy.Name != "mesh-operator" || pod.ServiceAccountName != "mesh-operator" {
		t.Errorf("Deployment %s with ServiceAccount %s, want both mesh-operator", deploy.Name, pod.ServiceAccountName)
	}
	if manager.Image != "registry.example.com/mesh/remote-istiod-operator:v9.9.9" || manager.ImagePullPolicy != corev1.PullAlways {
		t.Errorf("image %s pulled %s", manager.Image, manager.ImagePullPolicy)
	}
	if *deploy.Spec.Replicas != 3 {
		t.Errorf("replicas %d, want 3", *deploy.Spec.Replicas)
	}
	for _, arg := range []string{"--leader-elect", "--control-plane-namespace=mesh-system", "--zap-log-level=debug",
		"--istio-hub=registry.example.com/istio", "--istio-version=1.30.1", "--cluster-workers=16", "--allow-exec-credentials"} {
		if !slices.Contains(manager.Args, arg) {
			t.Errorf("args %v lack %s", manager.Args, arg)
		}
	}
	if got := manager.Resources.Limits[corev1.ResourceMemory]; got.Cmp(resource.MustParse("1Gi")) != 0 {
		t.Errorf("memory limit %s, want 1Gi", got.String())
	}
	if pod.NodeSelector["kubernetes.io/os"] != "linux" || len(pod.Tolerations) != 1 || pod.Affinity == nil || pod.Affinity.NodeAffinity == nil {
		t.Errorf("scheduling not passed through: nodeSelector %v, tolerations %v, affinity %v", pod.NodeSelector, pod.Tolerations, pod.Affinity)
	}
	if len(pod.ImagePullSecrets) != 1 || deploy.Spec.Template.Annotations["example.com/team"] != "mesh" {
		t.Errorf("pull secrets %v, pod annotations %v", pod.ImagePullSecrets, deploy.Spec.Template.Annotations)
	}
	expectHardened(t, pod)
	expectProbes(t, manager)
	for _, kind := range []string{"Role", "RoleBinding"} {
		findIn(t, objs, kind, "mesh-system") // the control plane namespace's
		findIn(t, objs, kind, operatorNS)    // the leader election lease's
	}

	monitor := find(t, objs, "ServiceMonitor")
	service := find(t, objs, "Service")
	if monitor.GetLabels()["release"] != "prometheus" {
		t.Errorf("ServiceMonitor labels %v lack release=prometheus", monitor.GetLabels())
	}
	selector, _, _ := unstructured.NestedStringMap(monitor.Object, "spec", "selector", "matchLabels")
	for k, v := range selector {
		if service.GetLabels()[k] != v {
			t.Errorf("ServiceMonitor selects %s=%s, which the metrics Service lacks", k, v)
		}
	}
	endpoints, _, _ := unstructured.NestedSlice(monitor.Object, "spec", "endpoints")
	if len(endpoints) != 1 || endpoints[0].(map[string]any)["port"] != "metrics" || endpoints[0].(map[string]any)["interval"] != "15s" {
		t.Errorf("ServiceMonitor endpoints %v, want port metrics every 15s", endpoints)
	}
}

// TestChartRBACIsGenerated checks that the chart grants exactly the rules controller-gen
// writes to config/rbac/role.yaml, bound to the chart's ServiceAccount: the ClusterRole,
// the Role of the control plane namespace and the leader election Role of the operator's
// own namespace.
func TestChartRBACIsGenerated(t *testing.T) {
	generated := readObjects(t, "../../config/rbac/role.yaml")
	objs := helmTemplate(t, valuesFrom(t, "controlPlaneNamespace: mesh-system"))
	sa := find(t, objs, "ServiceAccount")
	for _, r := range []struct{ kind, binding, generatedNS, chartNS string }{
		{"ClusterRole", "ClusterRoleBinding", "", ""},
		{"Role", "RoleBinding", "istio-system", "mesh-system"},
		{"Role", "RoleBinding", operatorNS, operatorNS},
	} {
		role := findIn(t, objs, r.kind, r.chartNS)
		want := as[rbacv1.ClusterRole](t, findIn(t, generated, r.kind, r.generatedNS)).Rules
		if diff := cmp.Diff(want, as[rbacv1.ClusterRole](t, role).Rules); diff != "" {
			t.Errorf("%s rules in %q differ from config/rbac/role.yaml (-generated +chart):\n%s", r.kind, r.chartNS, diff)
		}
		b := as[rbacv1.RoleBinding](t, findIn(t, objs, r.binding, r.chartNS))
		wantSubject := []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa.GetName(), Namespace: operatorNS}}
		if diff := cmp.Diff(wantSubject, b.Subjects); diff != "" {
			t.Errorf("%s subjects (-want +got):\n%s", r.binding, diff)
		}
		if b.RoleRef.Kind != r.kind || b.RoleRef.Name != role.GetName() {
			t.Errorf("%s in %q refers to %s %s", r.binding, r.chartNS, b.RoleRef.Kind, b.RoleRef.Name)
		}
	}
}

// TestChartCopiesAreCurrent fails when the chart's copies of generated files differ from
// the originals; `make manifests` refreshes them.
func TestChartCopiesAreCurrent(t *testing.T) {
	bases, err := filepath.Glob("../../config/crd/bases/*.yaml")
	if err != nil || len(bases) == 0 {
		t.Fatalf("no CRDs in config/crd/bases: %v", err)
	}
	want := map[string][]byte{}
	for _, path := range bases {
		want["crds/"+filepath.Base(path)] = mustRead(t, path)
	}
	got := map[string][]byte{}
	for _, crd := range loadChart(t).CRDObjects() {
		got[crd.Name] = crd.File.Data
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("the chart's crds/ differ from config/crd/bases; run make manifests (-generated +chart):\n%s", diff)
	}
	if !bytes.Equal(mustRead(t, "../../config/rbac/role.yaml"), mustRead(t, chartDir+"/files/role.yaml")) {
		t.Error("the chart's files/role.yaml differs from config/rbac/role.yaml; run make manifests")
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		t.Fatal(err)
	}
	return data
}
