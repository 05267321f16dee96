package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/localmesh"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// The Helm loop's release must not collide with what the data-plane clusters hold:
// Istio's remote profile (both address flavours of localmesh) and the operator's istiod.
func TestHelmReleaseTouchesNoObjectOfTheClusters(t *testing.T) {
	const id = "cluster-1"
	values, err := helmValues(id)
	if err != nil {
		t.Fatal(err)
	}
	release, err := istiochart.Render(istiochart.Discovery, helmRelease, localmesh.Namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	if len(release) < 10 {
		t.Fatalf("the chart rendered only %d objects", len(release))
	}
	taken := map[string]string{}
	for _, pilot := range []string{istiochart.DocumentationAddress, localmesh.MeshPilotHost} {
		remote, err := istiochart.RemoteProfile(istiochart.RemoteOptions{Namespace: localmesh.Namespace, ClusterID: id,
			Network: localmesh.Network, MeshID: localmesh.MeshID, RemotePilotAddress: pilot})
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range remote {
			taken[o.GetKind()+"/"+o.GetNamespace()+"/"+o.GetName()] = "the remote profile"
		}
	}
	spec := v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{id: {}}}
	in := render.InputsFor(spec, id, render.Settings{Namespace: localmesh.Namespace, Hub: localmesh.MeshHub})
	in.Version = localmesh.MeshIstioVersion
	if in.MeshSettings, err = controller.ChartMeshSettings(in); err != nil {
		t.Fatal(err)
	}
	ops, err := render.Render(in, scheme.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	webhook, err := render.InjectionWebhook(in, nil, scheme.Scheme)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range append(ops, webhook) {
		taken[o.GetObjectKind().GroupVersionKind().Kind+"/"+o.GetNamespace()+"/"+o.GetName()] = "the operator"
	}
	for _, o := range release {
		key := o.GetKind() + "/" + o.GetNamespace() + "/" + o.GetName()
		if owner, ok := taken[key]; ok {
			t.Errorf("the release's %s is also %s's", key, owner)
		}
		if !strings.Contains(o.GetName(), helmRevision) {
			t.Errorf("the release's %s does not carry its revision", key)
		}
	}
}

// The values are the operator's for the cluster: its name, one replica as in figure 1,
// the operator's image; the chart renders no validator beside the remote profile's.
func TestHelmValuesAreTheOperatorsForTheCluster(t *testing.T) {
	values, err := helmValues("cluster-7")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := istiochart.Render(istiochart.Discovery, helmRelease, localmesh.Namespace, values)
	if err != nil {
		t.Fatal(err)
	}
	d := istiochart.Find(objs, "Deployment", localmesh.Namespace, "istiod-"+helmRevision)
	if d == nil {
		t.Fatal("no istiod Deployment")
	}
	if r := fmt.Sprint(d.Object["spec"].(map[string]any)["replicas"]); r != "1" {
		t.Errorf("replicas %s, want 1", r)
	}
	raw := strings.Join(strings.Fields(toJSON(t, d)), "")
	for _, want := range []string{`"name":"CLUSTER_ID","value":"cluster-7"`, `"image":"` + localmesh.MeshHub + `/pilot:` + localmesh.MeshIstioVersion + `"`} {
		if !strings.Contains(raw, want) {
			t.Errorf("istiod has no %s", want)
		}
	}
	for _, o := range objs {
		if o.GetKind() == "ValidatingWebhookConfiguration" {
			t.Errorf("the release has a validator %s", o.GetName())
		}
	}
}

func TestClassifyRequests(t *testing.T) {
	for path, want := range map[string]string{
		"/version":                 "discovery",
		"/api":                     "discovery",
		"/api/v1":                  "discovery",
		"/apis":                    "discovery",
		"/apis/apps/v1":            "discovery",
		"/openapi/v3/apis/apps/v1": "discovery",
		"/api/v1/namespaces/istio-system/secrets":           "release",
		"/api/v1/namespaces/istio-system/secrets/sh.x":      "release",
		"/apis/apps/v1/namespaces/istio-system/deployments": "objects",
		"/api/v1/namespaces/istio-system/configmaps/istio":  "objects",
	} {
		if got := classify(path); got != want {
			t.Errorf("classify(%s) = %s, want %s", path, got, want)
		}
	}
}

func toJSON(t *testing.T, u *unstructured.Unstructured) string {
	t.Helper()
	raw, err := json.Marshal(u.Object)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}
