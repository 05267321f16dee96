package mirror

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// TestPlaceCallsOutObjectsVisibleElsewhere: of the objects whose namespace the cluster
// lacks, those that configure other namespaces are marked, the rest are not.
func TestPlaceCallsOutObjectsVisibleElsewhere(t *testing.T) {
	mk := func(kind, ns, name string, exportTo ...any) unstructured.Unstructured {
		u := unstructured.Unstructured{Object: map[string]any{"apiVersion": "networking.istio.io/v1", "kind": kind, "spec": map[string]any{}}}
		if exportTo != nil {
			u.Object["spec"] = map[string]any{"exportTo": exportTo}
		}
		u.SetNamespace(ns)
		u.SetName(name)
		return u
	}
	sources := []unstructured.Unstructured{
		mk("ServiceEntry", "gone", "default-export"),
		mk("VirtualService", "gone", "to-all", "*"),
		mk("DestinationRule", "gone", "to-other", ".", "bookinfo"),
		mk("VirtualService", "gone", "private", "."),
		mk("DestinationRule", "gone", "own-name", "gone", "~"),
		mk("Gateway", "gone", "ingress"),
		mk("Sidecar", "gone", "default"),
		mk("AuthorizationPolicy", "gone", "deny-all"),
		mk("Sidecar", "here", "kept"),
	}
	copies, skipped := Place(sources, map[string]bool{"here": true}, map[string]string{"owner": "us"})
	if len(copies) != 1 || copies[0].GetName() != "kept" {
		t.Fatalf("copies: %v", copies)
	}
	want := map[string]bool{
		"ServiceEntry gone/default-export": true, "VirtualService gone/to-all": true, "DestinationRule gone/to-other": true,
		"VirtualService gone/private": false, "DestinationRule gone/own-name": false, "Gateway gone/ingress": true,
		"Sidecar gone/default": false, "AuthorizationPolicy gone/deny-all": false,
	}
	if len(skipped) != len(want) {
		t.Fatalf("skipped %v", skipped)
	}
	for _, s := range skipped {
		if visible, ok := want[s.String()]; !ok || visible != s.Visible {
			t.Errorf("%s: visible %v (%s), want %v", s, s.Visible, s.Why, visible)
		}
		if s.Visible && s.Why == "" {
			t.Errorf("%s is visible without saying how", s)
		}
	}
}
