package localmesh

import (
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

const testRoot = "-----BEGIN CERTIFICATE-----\nMIIBmesh\n-----END CERTIFICATE-----\n"

// chartLabel is on every object Helm renders from Istio's charts.
const chartLabel = "helm.sh/chart"

// own are the objects localmesh writes itself because Istio's charts do not render
// them: the namespace and its lead annotation, the root certificate the mesh istiod
// publishes at run time, and the ordinary workload.
var own = []string{"Namespace /istio-system", "ConfigMap istio-system/istio-ca-root-cert", "Deployment default/httpbin"}

func TestDataPlaneObjectsAreIstiosCharts(t *testing.T) {
	for _, address := range []string{AddressExternalName, AddressEndpointSlice} {
		objs, err := dataPlaneObjects(DataPlane{ID: "cluster-x", Address: address}, []byte(testRoot))
		if err != nil {
			t.Fatal(err)
		}
		var mine []string
		for _, o := range objs {
			if _, rendered := o.GetLabels()[chartLabel]; rendered {
				continue
			}
			mine = append(mine, key(o))
		}
		if !slices.Equal(mine, own) {
			t.Errorf("%s: objects not rendered from Istio's charts: %v, want only %v", address, mine, own)
		}
		for _, want := range []string{
			"MutatingWebhookConfiguration /istio-sidecar-injector",
			"ValidatingWebhookConfiguration /istiod-default-validator",
			"Service istio-system/istiod",
			"Deployment istio-system/istio-ingressgateway",
			"Deployment istio-system/istio-eastwestgateway",
		} {
			if find(objs, want) == nil {
				t.Errorf("%s: no %s", address, want)
			}
		}
		for _, gw := range Gateways {
			dep := typed[appsv1.Deployment](t, find(objs, "Deployment "+gw))
			matched := false
			for _, sel := range switching.GatewaySelectors() {
				matched = matched || sel.Matches(labels.Set(dep.Labels))
			}
			if !matched {
				t.Errorf("%s: gateway %s has labels %v that no gateway selector of the switch matches", address, gw, dep.Labels)
			}
		}
		ns := typed[corev1.Namespace](t, find(objs, "Namespace /istio-system"))
		if ns.Annotations[switching.LeadAnnotation] != MeshClusterID {
			t.Errorf("%s: istio-system is led by %q", address, ns.Annotations[switching.LeadAnnotation])
		}
	}
}

func TestDataPlaneFlavours(t *testing.T) {
	root := []byte(testRoot)
	byName, err := dataPlaneObjects(DataPlane{ID: "cluster-1", Address: AddressExternalName}, root)
	if err != nil {
		t.Fatal(err)
	}
	svc := typed[corev1.Service](t, find(byName, "Service istio-system/istiod"))
	if svc.Spec.Type != corev1.ServiceTypeExternalName || svc.Spec.ExternalName != MeshPilotHost {
		t.Errorf("ExternalName flavour: Service istiod is %s %q", svc.Spec.Type, svc.Spec.ExternalName)
	}
	if find(byName, "EndpointSlice istio-system/istiod") != nil {
		t.Errorf("ExternalName flavour: an EndpointSlice")
	}
	injector := typed[admissionv1.MutatingWebhookConfiguration](t, find(byName, "MutatingWebhookConfiguration /istio-sidecar-injector"))
	for _, w := range injector.Webhooks {
		if ptr.Deref(w.ClientConfig.URL, "") != "https://127.0.0.1:1/inject/cluster/cluster-1/net/network-1" || string(w.ClientConfig.CABundle) != testRoot {
			t.Errorf("ExternalName flavour: webhook %s calls %+v", w.Name, w.ClientConfig)
		}
	}

	byIP, err := dataPlaneObjects(DataPlane{ID: "cluster-2", Address: AddressEndpointSlice}, root)
	if err != nil {
		t.Fatal(err)
	}
	svc = typed[corev1.Service](t, find(byIP, "Service istio-system/istiod"))
	if svc.Spec.Type == corev1.ServiceTypeExternalName || len(svc.Spec.Selector) > 0 {
		t.Errorf("EndpointSlice flavour: Service istiod is %s with selector %v", svc.Spec.Type, svc.Spec.Selector)
	}
	slice := typed[discoveryv1.EndpointSlice](t, find(byIP, "EndpointSlice istio-system/istiod"))
	if len(slice.Endpoints) != 1 || !slices.Equal(slice.Endpoints[0].Addresses, []string{istiochart.DocumentationAddress}) {
		t.Errorf("EndpointSlice flavour: endpoints %+v", slice.Endpoints)
	}
	injector = typed[admissionv1.MutatingWebhookConfiguration](t, find(byIP, "MutatingWebhookConfiguration /istio-sidecar-injector"))
	for _, w := range injector.Webhooks {
		s := w.ClientConfig.Service
		if s == nil || s.Namespace != Namespace || s.Name != "istiod" || ptr.Deref(s.Path, "") != "/inject/cluster/cluster-2/net/network-1" ||
			string(w.ClientConfig.CABundle) != testRoot {
			t.Errorf("EndpointSlice flavour: webhook %s calls %+v", w.Name, w.ClientConfig)
		}
	}

	if _, err := dataPlaneObjects(DataPlane{ID: "cluster-3"}, root); err == nil {
		t.Errorf("a data plane without a flavour renders")
	}
}

// TestDataPlaneIstioCRDs: a data plane asked for with Istio's CRDs holds those of
// Istio's base chart, as the remote profile installs them; one without holds none.
func TestDataPlaneIstioCRDs(t *testing.T) {
	crds := func(objs []client.Object) (names []string) {
		for _, o := range objs {
			if kindOf(o) == "CustomResourceDefinition" {
				names = append(names, o.GetName())
			}
		}
		return names
	}
	with, err := dataPlaneObjects(DataPlane{ID: "c", Address: AddressEndpointSlice, IstioCRDs: true}, []byte(testRoot))
	if err != nil {
		t.Fatal(err)
	}
	got := crds(with)
	if !slices.Contains(got, "virtualservices.networking.istio.io") || !slices.Contains(got, "sidecars.networking.istio.io") {
		t.Errorf("with IstioCRDs: CRDs %v lack Istio's VirtualService or Sidecar", got)
	}
	for _, o := range with {
		if kindOf(o) == "CustomResourceDefinition" && o.GetLabels()[chartLabel] == "" {
			t.Errorf("CRD %s is not rendered from Istio's base chart (labels %v)", o.GetName(), o.GetLabels())
		}
	}
	without, err := dataPlaneObjects(DataPlane{ID: "c", Address: AddressEndpointSlice}, []byte(testRoot))
	if err != nil {
		t.Fatal(err)
	}
	if got := crds(without); len(got) > 0 {
		t.Errorf("without IstioCRDs: CRDs %v", got)
	}
}

// TestNothingLeavesTheMachine reads every address an API server could be made to call
// from what localmesh installs: webhook URLs, ExternalNames and EndpointSlice
// addresses must be loopback ones, localhost, or the never-routed documentation address.
func TestNothingLeavesTheMachine(t *testing.T) {
	all, err := meshControlPlaneObjects()
	if err != nil {
		t.Fatal(err)
	}
	for _, address := range []string{AddressExternalName, AddressEndpointSlice} {
		objs, err := dataPlaneObjects(DataPlane{ID: "c", Address: address}, []byte(testRoot))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, objs...)
	}
	checked := 0
	for _, o := range all {
		u := toUnstructured(t, o)
		switch u.GetKind() {
		case "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration":
			hooks, _, _ := unstructured.NestedSlice(u.Object, "webhooks")
			for _, h := range hooks {
				raw, ok, _ := unstructured.NestedString(h.(map[string]any), "clientConfig", "url")
				if !ok {
					continue
				}
				parsed, err := url.Parse(raw)
				if err != nil || !local(parsed.Hostname()) {
					t.Errorf("%s calls %s", key(o), raw)
				}
				checked++
			}
		case "Service":
			if name, ok, _ := unstructured.NestedString(u.Object, "spec", "externalName"); ok {
				if !local(name) {
					t.Errorf("%s leads to %s", key(o), name)
				}
				checked++
			}
		case "EndpointSlice":
			eps, _, _ := unstructured.NestedSlice(u.Object, "endpoints")
			for _, ep := range eps {
				addrs, _, _ := unstructured.NestedStringSlice(ep.(map[string]any), "addresses")
				for _, a := range addrs {
					if !local(a) && a != istiochart.DocumentationAddress {
						t.Errorf("%s holds %s", key(o), a)
					}
					checked++
				}
			}
		}
	}
	if checked < 3 {
		t.Fatalf("checked only %d addresses: the walk is broken", checked)
	}
}

func TestMeshControlPlane(t *testing.T) {
	objs, err := meshControlPlaneObjects()
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if _, ok := o.GetLabels()[chartLabel]; !ok {
			t.Errorf("%s is not rendered from Istio's chart", key(o))
		}
	}
	mesh := typed[corev1.ConfigMap](t, find(objs, "ConfigMap istio-system/istio"))
	var meshConfig struct {
		AccessLogFile         string `json:"accessLogFile"`
		OutboundTrafficPolicy struct {
			Mode string `json:"mode"`
		} `json:"outboundTrafficPolicy"`
	}
	if err := yaml.Unmarshal([]byte(mesh.Data["mesh"]), &meshConfig); err != nil {
		t.Fatal(err)
	}
	if meshConfig.OutboundTrafficPolicy.Mode != MeshOutboundTrafficPolicy || meshConfig.AccessLogFile != MeshAccessLogFile {
		t.Errorf("the mesh config lacks the mesh's settings:\n%s", mesh.Data["mesh"])
	}
	injector := typed[corev1.ConfigMap](t, find(objs, "ConfigMap istio-system/istio-sidecar-injector"))
	if !strings.Contains(injector.Data["values"], `"memory": "`+MeshProxyMemoryLimit+`"`) {
		t.Errorf("the injector values lack the proxy memory limit %s", MeshProxyMemoryLimit)
	}
	istiod := typed[appsv1.Deployment](t, find(objs, "Deployment istio-system/istiod"))
	if got, want := istiod.Spec.Template.Spec.Containers[0].Image, MeshHub+"/pilot:"+MeshIstioVersion; got != want {
		t.Errorf("the mesh istiod's image is %s, want %s", got, want)
	}
}

func local(host string) bool {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return ip.IsLoopback()
	}
	h := strings.TrimSuffix(strings.ToLower(host), ".")
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

func key(o client.Object) string {
	kind := kindOf(o)
	if i := strings.LastIndex(kind, "."); i >= 0 {
		kind = kind[i+1:]
	}
	return kind + " " + o.GetNamespace() + "/" + o.GetName()
}

func find(objs []client.Object, k string) client.Object {
	for _, o := range objs {
		if key(o) == k {
			return o
		}
	}
	return nil
}

func toUnstructured(t *testing.T, o client.Object) *unstructured.Unstructured {
	t.Helper()
	if u, ok := o.(*unstructured.Unstructured); ok {
		return u
	}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(o)
	if err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: raw}
}

// typed converts an object to T, failing the test when there is none.
func typed[T any](t *testing.T, o client.Object) *T {
	t.Helper()
	if o == nil {
		t.Fatalf("no such object")
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(toUnstructured(t, o).Object, out); err != nil {
		t.Fatal(err)
	}
	return out
}
