package controller

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/ca/catest"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

func TestIntermediateExpiry(t *testing.T) {
	issuer, err := ca.NewIssuer(catest.MeshCACerts(365 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	bundle, err := issuer.Issue("cluster-2", 90*24*time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	got := intermediateExpiry(bundle)
	if got == nil || got.Sub(now.Add(90*24*time.Hour)).Abs() > 2*time.Second {
		t.Fatalf("expiry %v, want 90 days from now", got)
	}
	if intermediateExpiry(ca.Bundle{}) != nil {
		t.Error("a bundle without a certificate has no expiry")
	}
}

func TestLeftBehind(t *testing.T) {
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	switchedAt := time.Date(2026, 2, 1, 10, 0, 0, 0, time.UTC)
	expires := metav1.NewTime(now.Add(24 * time.Hour))
	cs := &v1beta1.ClusterStatus{ClusterID: "cluster-2", AppliedHash: "abc", IstioVersion: "1.31.0",
		SwitchedAt: &metav1.Time{Time: switchedAt}, IntermediateCAExpiresAt: &expires}
	st := &switching.State{SwitchedAt: switchedAt,
		Injectors: []switching.WebhookConfigRecord{{Name: "istio-sidecar-injector"}},
		Lead:      &switching.AnnotationRecord{Present: true, Value: "mesh"},
		Address:   &switching.AddressRecord{Flavour: switching.FlavourExternalName, ExternalName: "istiod.mesh.example"}}

	got := leftBehind(cs, st, "istio-system", now)
	for _, want := range []string{
		"istiod 1.31.0 in namespace istio-system and every object labelled istio.alibabacloud.com/remote-cluster=cluster-2",
		"switched at 2026-02-01T10:00:00Z",
		"Service istio-system/istiod leads to that istiod (the remote profile had it ExternalName istiod.mesh.example)",
		"webhooks istio-sidecar-injector call it",
		"expires at 2026-03-02T00:00:00Z",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("%q lacks %q", got, want)
		}
	}
	if got := leftBehind(cs, nil, "istio-system", now.Add(48*time.Hour)); !strings.Contains(got, "no copy of its record") || !strings.Contains(got, "expired at") {
		t.Errorf("without a record copy and past the expiry: %q", got)
	}
	if nothingLeft(cs, nil) || nothingLeft(&v1beta1.ClusterStatus{}, st) {
		t.Error("an applied or switched cluster has something left")
	}
	if !nothingLeft(&v1beta1.ClusterStatus{ClusterID: "cluster-3"}, nil) {
		t.Error("a cluster never applied nor switched has nothing left")
	}
}
