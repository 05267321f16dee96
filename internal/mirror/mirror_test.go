package mirror

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestKindsCoverIstioConfiguration(t *testing.T) {
	got := map[string]bool{}
	for _, k := range Kinds() {
		got[k.Kind] = true
	}
	for _, want := range []string{"VirtualService", "DestinationRule", "Gateway", "ServiceEntry", "Sidecar", "WorkloadEntry",
		"WorkloadGroup", "PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication", "Telemetry", "EnvoyFilter",
		"ProxyConfig", "WasmPlugin"} {
		if !got[want] {
			t.Errorf("%s is not mirrored", want)
		}
	}
	if len(CRDs()) != len(Kinds()) {
		t.Errorf("%d CRDs but %d kinds", len(CRDs()), len(Kinds()))
	}
}

func TestCopyKeepsSpecAndDropsServerFields(t *testing.T) {
	src := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
		"metadata": map[string]any{"name": "reviews", "namespace": "bookinfo", "uid": "123", "resourceVersion": "9",
			"labels":      map[string]any{"app": "reviews"},
			"annotations": map[string]any{"kubectl.kubernetes.io/last-applied-configuration": "{}", "note": "keep"}},
		"spec":   map[string]any{"hosts": []any{"reviews"}},
		"status": map[string]any{"observedGeneration": "1"},
	}}
	c := Copy(src, map[string]string{"owner": "me"})
	if c.GetUID() != "" || c.GetResourceVersion() != "" || c.Object["status"] != nil {
		t.Errorf("server fields copied: %v", c.Object)
	}
	if c.GetLabels()["app"] != "reviews" || c.GetLabels()["owner"] != "me" || c.GetLabels()[MirroredLabel] != "mesh" {
		t.Errorf("labels: %v", c.GetLabels())
	}
	if _, ok := c.GetAnnotations()["kubectl.kubernetes.io/last-applied-configuration"]; ok || c.GetAnnotations()["note"] != "keep" {
		t.Errorf("annotations: %v", c.GetAnnotations())
	}
	hosts, _, _ := unstructured.NestedStringSlice(c.Object, "spec", "hosts")
	if len(hosts) != 1 || hosts[0] != "reviews" {
		t.Errorf("spec not copied: %v", c.Object["spec"])
	}
	// The copy is independent of the source.
	_ = unstructured.SetNestedStringSlice(c.Object, []string{"x"}, "spec", "hosts")
	if h, _, _ := unstructured.NestedStringSlice(src.Object, "spec", "hosts"); h[0] != "reviews" {
		t.Error("changing the copy changed the source")
	}
}

func TestCopiesSkipMissingNamespaces(t *testing.T) {
	mk := func(ns, name string) unstructured.Unstructured {
		u := unstructured.Unstructured{Object: map[string]any{"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy"}}
		u.SetNamespace(ns)
		u.SetName(name)
		return u
	}
	out, skipped := Copies([]unstructured.Unstructured{mk("a", "x"), mk("b", "y")}, map[string]bool{"a": true}, nil)
	if len(out) != 1 || out[0].GetName() != "x" || len(skipped) != 1 || skipped[0] != "AuthorizationPolicy b/y" {
		t.Errorf("out %v skipped %v", out, skipped)
	}
}
