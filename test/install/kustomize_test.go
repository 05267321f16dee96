package install

import (
	"slices"
	"sort"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
)

// TestKustomizeDeploysWhatTheChartDoes compares config/default with the chart's defaults
// installed as release remote-istiod-operator in remote-istiod-operator-system: the same
// objects under the same names, the same RBAC and the same manager pod but for its image.
func TestKustomizeDeploysWhatTheChartDoes(t *testing.T) {
	kustomized := kustomizeBuild(t)
	charted := helmTemplate(t, nil)
	charted = append(charted, readObjects(t, chartDir+"/crds/istio.alibabacloud.com_asmmeshconfigs.yaml")...)

	var withoutNamespace []*unstructured.Unstructured
	for _, o := range kustomized {
		// The chart's namespace is the release's, made by `helm install --create-namespace`.
		if o.GetKind() != "Namespace" {
			withoutNamespace = append(withoutNamespace, o)
		}
	}
	if diff := cmp.Diff(keysOf(charted), keysOf(withoutNamespace)); diff != "" {
		t.Fatalf("objects differ (-chart +kustomize):\n%s", diff)
	}

	kDeploy := as[appsv1.Deployment](t, find(t, kustomized, "Deployment"))
	hDeploy := as[appsv1.Deployment](t, find(t, charted, "Deployment"))
	expectHardened(t, kDeploy.Spec.Template.Spec)
	expectProbes(t, kDeploy.Spec.Template.Spec.Containers[0])
	expectMetricsServiceSelects(t, find(t, kustomized, "Service"), kDeploy)
	if *kDeploy.Spec.Replicas != *hDeploy.Spec.Replicas {
		t.Errorf("replicas: kustomize %d, chart %d", *kDeploy.Spec.Replicas, *hDeploy.Spec.Replicas)
	}
	kPod, hPod := kDeploy.Spec.Template.Spec, hDeploy.Spec.Template.Spec
	if kPod.Containers[0].Image == "" || hPod.Containers[0].Image == "" {
		t.Fatal("a manager without an image")
	}
	kPod.Containers[0].Image, hPod.Containers[0].Image = "", "" // tagged differently on purpose
	if diff := cmp.Diff(hPod, kPod); diff != "" {
		t.Errorf("manager pods differ (-chart +kustomize):\n%s", diff)
	}

	for _, r := range []struct{ kind, binding, namespace string }{
		{"ClusterRole", "ClusterRoleBinding", ""}, {"Role", "RoleBinding", "istio-system"}, {"Role", "RoleBinding", operatorNS},
	} {
		if diff := cmp.Diff(as[rbacv1.ClusterRole](t, findIn(t, charted, r.kind, r.namespace)).Rules,
			as[rbacv1.ClusterRole](t, findIn(t, kustomized, r.kind, r.namespace)).Rules); diff != "" {
			t.Errorf("%s rules in %q differ (-chart +kustomize):\n%s", r.kind, r.namespace, diff)
		}
		h, k := as[rbacv1.RoleBinding](t, findIn(t, charted, r.binding, r.namespace)), as[rbacv1.RoleBinding](t, findIn(t, kustomized, r.binding, r.namespace))
		if diff := cmp.Diff([]any{h.RoleRef, h.Subjects}, []any{k.RoleRef, k.Subjects}); diff != "" {
			t.Errorf("%s in %q differs (-chart +kustomize):\n%s", r.binding, r.namespace, diff)
		}
	}
	if diff := cmp.Diff(as[corev1.Service](t, find(t, charted, "Service")).Spec.Ports,
		as[corev1.Service](t, find(t, kustomized, "Service")).Spec.Ports); diff != "" {
		t.Errorf("metrics Service ports differ (-chart +kustomize):\n%s", diff)
	}
}

// keysOf names each object by kind, namespace and name.
func keysOf(objs []*unstructured.Unstructured) map[string]bool {
	keys := map[string]bool{}
	for _, o := range objs {
		keys[o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName()] = true
	}
	return keys
}

// config/remote, applied in a data-plane cluster, binds its roles to the ServiceAccount
// that `istioctl create-remote-secret --service-account remote-istiod-operator` uses;
// the envtest suite proves the roles are enough.
func TestRemoteRBACBindsItsServiceAccount(t *testing.T) {
	objs := kustomizeBuildDir(t, "remote")
	sa := find(t, objs, "ServiceAccount")
	if sa.GetName() != "remote-istiod-operator" || sa.GetNamespace() != "istio-system" {
		t.Fatalf("ServiceAccount %s/%s", sa.GetNamespace(), sa.GetName())
	}
	roles := map[string]bool{}
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" || o.GetKind() == "Role" {
			roles[o.GetKind()+"/"+o.GetName()] = true
		}
	}
	bound := map[string]bool{}
	for _, kind := range []string{"ClusterRoleBinding", "RoleBinding"} {
		b := as[rbacv1.RoleBinding](t, find(t, objs, kind)) // same shape for both kinds
		if len(b.Subjects) != 1 || b.Subjects[0].Kind != "ServiceAccount" || b.Subjects[0].Name != sa.GetName() || b.Subjects[0].Namespace != sa.GetNamespace() {
			t.Errorf("%s %s binds %v, want the ServiceAccount", kind, b.Name, b.Subjects)
		}
		bound[b.RoleRef.Kind+"/"+b.RoleRef.Name] = true
	}
	if len(roles) != 2 || len(bound) != 2 {
		t.Errorf("roles %v, bound %v: want a ClusterRole and a Role, each bound", roles, bound)
	}
	for r := range roles {
		if !bound[r] {
			t.Errorf("%s is not bound", r)
		}
	}
}

// TestRemoteRBACNamesIstiosCRDs: config/remote lets the operator change and delete only
// the CRDs it installs, Istio's (internal/mirror/crds), by name.
func TestRemoteRBACNamesIstiosCRDs(t *testing.T) {
	var want []string
	for _, crd := range mirror.CRDs() {
		want = append(want, crd.GetName())
	}
	sort.Strings(want)
	role := as[rbacv1.ClusterRole](t, find(t, kustomizeBuildDir(t, "remote"), "ClusterRole"))
	found := false
	for _, r := range role.Rules {
		if !slices.Contains(r.Resources, "customresourcedefinitions") {
			continue
		}
		if len(r.ResourceNames) == 0 {
			if slices.ContainsFunc(r.Verbs, func(v string) bool { return v == "patch" || v == "update" || v == "delete" || v == "*" }) {
				t.Errorf("CRDs may be %v by any name", r.Verbs)
			}
			continue
		}
		found = true
		names := slices.Clone(r.ResourceNames)
		sort.Strings(names)
		if diff := cmp.Diff(want, names); diff != "" {
			t.Errorf("the CRDs config/remote names differ from Istio's the operator installs (-mirror +config/remote):\n%s", diff)
		}
	}
	if !found {
		t.Error("config/remote names no CRDs")
	}
}
