package istiochart

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"net"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"istio.io/istio/manifests"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"
)

const (
	clusterID = "cluster-2"
	network   = "network-1"
	meshID    = "mesh1"
	injection = "/inject/cluster/cluster-2/net/network-1"
	testPEM   = "-----BEGIN CERTIFICATE-----\nMIIBfixture\n-----END CERTIFICATE-----\n"
)

// The objects of the remote profile that every flavour shares: the base chart's
// validator and reader ServiceAccount, the discovery chart's injector, reader RBAC and
// its values ConfigMap.
var remoteCommon = []string{
	"ClusterRole /istio-reader-clusterrole-istio-system",
	"ClusterRoleBinding /istio-reader-clusterrole-istio-system",
	"ConfigMap istio-system/values",
	"MutatingWebhookConfiguration /istio-sidecar-injector",
	"ServiceAccount istio-system/istio-reader-service-account",
	"ValidatingWebhookConfiguration /istiod-default-validator",
}

func TestVersion(t *testing.T) {
	// The module pins one Istio commit; bumping it to another minor changes this.
	if got, want := Version(), "1.31-dev"; got != want {
		t.Errorf("Version() = %q, want %q", got, want)
	}
	if Minor() != 31 {
		t.Errorf("Minor() = %d, want 31", Minor())
	}
	// The rule Version relies on: the newest compatibility profile of a chart of 1.N
	// is 1.(N-1), and it restores what 1.N changed.
	f := fmt.Sprintf("charts/istio-control/istio-discovery/files/profile-compatibility-version-1.%d.yaml", Minor()-1)
	data, err := fs.ReadFile(manifests.FS, f)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("# 1.%d behavioral changes", Minor()); !strings.Contains(string(data), want) {
		t.Errorf("%s does not say %q", f, want)
	}
	// The charts' own version fields are the placeholder Istio's release tooling replaces.
	c, err := loadChart(Discovery)
	if err != nil {
		t.Fatal(err)
	}
	if c.Metadata.Name != "istiod" || c.Metadata.Version != "1.0.0" {
		t.Errorf("istio-discovery chart is %s %s, want the placeholder istiod 1.0.0", c.Metadata.Name, c.Metadata.Version)
	}
}

func TestCharts(t *testing.T) {
	charts := Charts()
	for _, want := range []string{"base", "istio-control/istio-discovery", "gateway", "ztunnel", "istio-cni"} {
		if !slices.Contains(charts, want) {
			t.Errorf("Charts() = %v, lacks %s", charts, want)
		}
	}
	// The directory path, its last element and the Chart.yaml name are the same chart.
	var rendered [][]string
	for _, name := range []string{"istio-discovery", "istiod", "istio-control/istio-discovery"} {
		objs, err := Render(name, "istiod", DefaultNamespace, nil)
		if err != nil {
			t.Fatal(err)
		}
		rendered = append(rendered, inventory(objs))
	}
	if !reflect.DeepEqual(rendered[0], rendered[1]) || !reflect.DeepEqual(rendered[0], rendered[2]) {
		t.Errorf("the names of istio-discovery render differently: %v", rendered)
	}
	if _, err := Render("pilot", "istiod", DefaultNamespace, nil); err == nil || !strings.Contains(err.Error(), "no chart") {
		t.Errorf("Render of an unknown chart: err = %v", err)
	}
}

func TestRenderBase(t *testing.T) {
	values := map[string]any{"global": map[string]any{"istioNamespace": "istio-system"}}
	before := deepCopy(values)
	objs, err := Render(Base, "istio-base", DefaultNamespace, values)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(values, before) {
		t.Errorf("Render changed its values: %v", values)
	}
	want := []string{
		"ServiceAccount istio-system/istio-reader-service-account",
		"ValidatingWebhookConfiguration /istiod-default-validator",
	}
	if diff := cmp.Diff(want, inventory(objs)); diff != "" {
		t.Errorf("base chart without CRDs (-want +got):\n%s", diff)
	}

	withCRDs, err := Render(Base, "istio-base", DefaultNamespace, values, WithCRDs())
	if err != nil {
		t.Fatal(err)
	}
	crds := map[string]bool{}
	for _, o := range withCRDs {
		if o.GetKind() == "CustomResourceDefinition" {
			crds[o.GetName()] = true
		}
	}
	for _, name := range []string{"virtualservices.networking.istio.io", "peerauthentications.security.istio.io", "telemetries.telemetry.istio.io"} {
		if !crds[name] {
			t.Errorf("WithCRDs: no CRD %s among %d", name, len(crds))
		}
	}
	// Without CRDs, the other objects are exactly those rendered with them.
	others := slices.DeleteFunc(slices.Clone(withCRDs), func(o *unstructured.Unstructured) bool {
		return o.GetKind() == "CustomResourceDefinition"
	})
	if diff := cmp.Diff(others, objs); diff != "" {
		t.Errorf("base chart without CRDs differs from its render with CRDs (-with +without):\n%s", diff)
	}
	if !slices.IsSortedFunc(withCRDs, compareObjects) {
		t.Errorf("objects are not sorted: %v", inventory(withCRDs))
	}
}

// TestRemoteProfileIP: a remote pilot address that is an IP gives the selector-less
// Service istiod and an EndpointSlice holding the IP.
func TestRemoteProfileIP(t *testing.T) {
	objs, err := RemoteProfile(RemoteOptions{ClusterID: clusterID, Network: network, MeshID: meshID, RemotePilotAddress: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{"EndpointSlice istio-system/istiod", "Service istio-system/istiod"}, remoteCommon...)
	if diff := cmp.Diff(sorted(want), inventory(objs)); diff != "" {
		t.Errorf("remote profile with an IP (-want +got):\n%s", diff)
	}
	assertNoIstiod(t, objs)

	svc := get[corev1.Service](t, objs, "Service", "istio-system", "istiod")
	if svc.Spec.Type != "" || svc.Spec.ExternalName != "" || svc.Spec.Selector != nil {
		t.Errorf("Service istiod: type %q externalName %q selector %v, want a selector-less ClusterIP Service",
			svc.Spec.Type, svc.Spec.ExternalName, svc.Spec.Selector)
	}
	wantPorts := []corev1.ServicePort{
		{Name: "tcp-istiod", Port: 15012, Protocol: corev1.ProtocolTCP},
		{Name: "tcp-webhook", Port: 443, TargetPort: intstr.FromInt32(15017), Protocol: corev1.ProtocolTCP},
	}
	if diff := cmp.Diff(wantPorts, svc.Spec.Ports); diff != "" {
		t.Errorf("Service istiod ports (-want +got):\n%s", diff)
	}

	es := get[discoveryv1.EndpointSlice](t, objs, "EndpointSlice", "istio-system", "istiod")
	if es.Labels[discoveryv1.LabelServiceName] != "istiod" {
		t.Errorf("EndpointSlice labels %v, want %s=istiod", es.Labels, discoveryv1.LabelServiceName)
	}
	if es.AddressType != discoveryv1.AddressTypeIPv4 || len(es.Endpoints) != 1 ||
		!slices.Equal(es.Endpoints[0].Addresses, []string{"127.0.0.1"}) {
		t.Errorf("EndpointSlice: %s %+v, want IPv4 127.0.0.1", es.AddressType, es.Endpoints)
	}
	var ports []string
	for _, p := range es.Ports {
		ports = append(ports, fmt.Sprintf("%s/%d", *p.Name, *p.Port))
	}
	if !slices.Equal(ports, []string{"tcp-istiod/15012", "tcp-webhook/15017"}) {
		t.Errorf("EndpointSlice ports %v", ports)
	}

	assertInjector(t, objs, "istio-sidecar-injector", 4, func(cc admissionv1.WebhookClientConfig) string {
		if cc.URL != nil || cc.Service == nil {
			return fmt.Sprintf("url %v service %v, want the Service", cc.URL, cc.Service)
		}
		want := admissionv1.ServiceReference{Namespace: "istio-system", Name: "istiod", Path: ptr(injection), Port: ptr[int32](443)}
		if diff := cmp.Diff(want, *cc.Service); diff != "" {
			return "service (-want +got):\n" + diff
		}
		if len(cc.CABundle) != 0 {
			return fmt.Sprintf("caBundle %q, want none", cc.CABundle)
		}
		return ""
	})
	assertValidator(t, objs, "istiod", nil, "")
}

// TestRemoteProfileHostName: a host name gives a Service of type ExternalName and no
// EndpointSlice.
func TestRemoteProfileHostName(t *testing.T) {
	objs, err := RemoteProfile(RemoteOptions{ClusterID: clusterID, Network: network, RemotePilotAddress: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]string{"Service istio-system/istiod"}, remoteCommon...)
	if diff := cmp.Diff(sorted(want), inventory(objs)); diff != "" {
		t.Errorf("remote profile with a host name (-want +got):\n%s", diff)
	}
	assertNoIstiod(t, objs)
	svc := get[corev1.Service](t, objs, "Service", "istio-system", "istiod")
	if svc.Spec.Type != corev1.ServiceTypeExternalName || svc.Spec.ExternalName != "localhost" || svc.Spec.Selector != nil {
		t.Errorf("Service istiod: type %q externalName %q selector %v, want ExternalName localhost",
			svc.Spec.Type, svc.Spec.ExternalName, svc.Spec.Selector)
	}
	assertInjector(t, objs, "istio-sidecar-injector", 4, func(cc admissionv1.WebhookClientConfig) string {
		if cc.Service == nil || cc.Service.Name != "istiod" || *cc.Service.Path != injection {
			return fmt.Sprintf("service %+v, want istiod at %s", cc.Service, injection)
		}
		return ""
	})
	assertValidator(t, objs, "istiod", nil, "")
}

// TestRemoteProfileInjectionURL: the injector calls the URL with the CA bundle; with no
// remote pilot address there is no Service istiod.
func TestRemoteProfileInjectionURL(t *testing.T) {
	url := "https://127.0.0.1:" + closedPort(t) + injection
	objs, err := RemoteProfile(RemoteOptions{ClusterID: clusterID, Network: network,
		InjectionURL: url, InjectionCABundle: []byte(testPEM)})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(remoteCommon), inventory(objs)); diff != "" {
		t.Errorf("remote profile with an injection URL (-want +got):\n%s", diff)
	}
	assertNoIstiod(t, objs)
	assertInjector(t, objs, "istio-sidecar-injector", 4, func(cc admissionv1.WebhookClientConfig) string {
		if cc.Service != nil || cc.URL == nil || *cc.URL != url {
			return fmt.Sprintf("url %v service %v, want url %s", cc.URL, cc.Service, url)
		}
		if string(cc.CABundle) != testPEM {
			return fmt.Sprintf("caBundle %q, want %q", cc.CABundle, testPEM)
		}
		return ""
	})
	assertValidator(t, objs, "istiod", nil, "")
}

func TestRemoteProfileValidationURL(t *testing.T) {
	url := "https://localhost:" + closedPort(t) + "/validate"
	objs, err := RemoteProfile(RemoteOptions{ClusterID: clusterID, Network: network, RemotePilotAddress: "127.0.0.1",
		ValidationURL: url, ValidationCABundle: []byte(testPEM)})
	if err != nil {
		t.Fatal(err)
	}
	assertValidator(t, objs, "", []byte(testPEM), url)
}

func TestRemoteProfileRevision(t *testing.T) {
	objs, err := RemoteProfile(RemoteOptions{ClusterID: clusterID, Network: network, RemotePilotAddress: "127.0.0.1", Revision: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"ClusterRole /istio-reader-clusterrole-canary-istio-system",
		"ClusterRoleBinding /istio-reader-clusterrole-canary-istio-system",
		"ConfigMap istio-system/values-canary",
		"EndpointSlice istio-system/istiod-canary",
		"MutatingWebhookConfiguration /istio-sidecar-injector-canary",
		"Service istio-system/istiod-canary",
		"ServiceAccount istio-system/istio-reader-service-account",
		"ValidatingWebhookConfiguration /istiod-default-validator",
	}
	if diff := cmp.Diff(want, inventory(objs)); diff != "" {
		t.Errorf("remote profile of revision canary (-want +got):\n%s", diff)
	}
	es := get[discoveryv1.EndpointSlice](t, objs, "EndpointSlice", "istio-system", "istiod-canary")
	if es.Labels[discoveryv1.LabelServiceName] != "istiod-canary" {
		t.Errorf("EndpointSlice labels %v, want %s=istiod-canary", es.Labels, discoveryv1.LabelServiceName)
	}
	// A revision has only the two revision-selecting webhooks, not the default ones.
	assertInjector(t, objs, "istio-sidecar-injector-canary", 2, func(cc admissionv1.WebhookClientConfig) string {
		if cc.Service == nil || cc.Service.Name != "istiod-canary" {
			return fmt.Sprintf("service %+v, want istiod-canary", cc.Service)
		}
		return ""
	})
	assertValidator(t, objs, "istiod-canary", nil, "")
}

func TestRemoteProfileConfigCluster(t *testing.T) {
	objs, err := RemoteProfile(RemoteOptions{ClusterID: clusterID, Network: network, RemotePilotAddress: "127.0.0.1", ConfigCluster: true})
	if err != nil {
		t.Fatal(err)
	}
	got := inventory(objs)
	for _, want := range []string{"ServiceAccount istio-system/istiod", "ClusterRole /istiod-clusterrole-istio-system",
		"Role istio-system/istiod", "ValidatingWebhookConfiguration /istio-validator-istio-system"} {
		if !slices.Contains(got, want) {
			t.Errorf("config cluster lacks %s: %v", want, got)
		}
	}
	assertNoIstiod(t, objs)
}

func TestRemoteProfileCRDs(t *testing.T) {
	objs, err := RemoteProfile(RemoteOptions{RemotePilotAddress: "127.0.0.1", CRDs: true})
	if err != nil {
		t.Fatal(err)
	}
	if Find(objs, "CustomResourceDefinition", "", "virtualservices.networking.istio.io") == nil {
		t.Errorf("CRDs: true renders no VirtualService CRD: %v", inventory(objs))
	}
}

func TestRemoteProfileLoopbackOnly(t *testing.T) {
	for _, opts := range []RemoteOptions{
		{RemotePilotAddress: "198.51.100.10"},
		{RemotePilotAddress: "istiod.example"},
		{InjectionURL: "https://192.0.2.10:15017/inject"},
		{InjectionURL: "https://istiod.example:15017/inject"},
		{ValidationURL: "https://192.0.2.10:15017/validate"},
	} {
		if _, err := RemoteProfile(opts); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("RemoteProfile(%+v): err = %v, want a refusal", opts, err)
		}
	}
	for _, addr := range []string{"127.0.0.1", "127.1.2.3", "::1", "localhost", "istiod.localhost", DocumentationAddress} {
		if _, err := RemoteProfile(RemoteOptions{RemotePilotAddress: addr}); err != nil {
			t.Errorf("RemoteProfile with %s: %v", addr, err)
		}
	}
	// The address an API server takes in an EndpointSlice.
	objs, err := RemoteProfile(RemoteOptions{RemotePilotAddress: DocumentationAddress})
	if err != nil {
		t.Fatal(err)
	}
	es := get[discoveryv1.EndpointSlice](t, objs, "EndpointSlice", "istio-system", "istiod")
	if len(es.Endpoints) != 1 || !slices.Equal(es.Endpoints[0].Addresses, []string{DocumentationAddress}) {
		t.Errorf("EndpointSlice endpoints %+v, want %s", es.Endpoints, DocumentationAddress)
	}
}

func TestInjectionPath(t *testing.T) {
	for _, c := range []struct{ cluster, network, want string }{
		{"c", "n", "/inject/cluster/c/net/n"},
		{"c", "", "/inject/cluster/c"},
		{"", "", "/inject"},
	} {
		if got := InjectionPath(c.cluster, c.network); got != c.want {
			t.Errorf("InjectionPath(%q, %q) = %q, want %q", c.cluster, c.network, got, c.want)
		}
	}
}

func TestMeshControlPlane(t *testing.T) {
	values, err := ParseValues(`
meshConfig:
  accessLogFile: /dev/stdout
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
global:
  proxy:
    resources:
      requests: {cpu: 50m, memory: 64Mi}
      limits: {cpu: "1", memory: 256Mi}
`)
	if err != nil {
		t.Fatal(err)
	}
	objs, err := MeshControlPlane(MeshOptions{ClusterID: "mesh", Network: network, MeshID: meshID,
		Hub: "localhost:5000/istio", Tag: "1.31.0-fixture", Values: values})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Deployment istio-system/istiod", "Service istio-system/istiod",
		"ConfigMap istio-system/istio", "ConfigMap istio-system/istio-sidecar-injector",
		"MutatingWebhookConfiguration /istio-sidecar-injector", "ValidatingWebhookConfiguration /istio-validator-istio-system"} {
		if !slices.Contains(inventory(objs), want) {
			t.Errorf("mesh control plane lacks %s: %v", want, inventory(objs))
		}
	}

	// The mesh ConfigMap carries the custom meshConfig over the chart's own.
	mesh := get[corev1.ConfigMap](t, objs, "ConfigMap", "istio-system", "istio")
	if keys := sortedKeys(mesh.Data); !slices.Equal(keys, []string{"mesh", "meshNetworks"}) {
		t.Errorf("ConfigMap istio keys %v", keys)
	}
	var meshConfig map[string]any
	if err := yaml.Unmarshal([]byte(mesh.Data["mesh"]), &meshConfig); err != nil {
		t.Fatal(err)
	}
	// All of it: the chart's own mesh config with the custom fields merged in.
	wantMesh := map[string]any{
		"accessLogFile":         "/dev/stdout",
		"outboundTrafficPolicy": map[string]any{"mode": "REGISTRY_ONLY"},
		"defaultConfig":         map[string]any{"discoveryAddress": "istiod.istio-system.svc:15012", "meshId": meshID},
		"defaultProviders":      map[string]any{"metrics": []any{"prometheus"}},
		"enablePrometheusMerge": true,
		"rootNamespace":         "istio-system",
		"trustDomain":           "cluster.local",
	}
	if diff := cmp.Diff(wantMesh, meshConfig); diff != "" {
		t.Errorf("ConfigMap istio mesh (-want +got):\n%s", diff)
	}
	if strings.TrimSpace(mesh.Data["meshNetworks"]) != "networks: {}" {
		t.Errorf("ConfigMap istio meshNetworks %q", mesh.Data["meshNetworks"])
	}

	// The injector ConfigMap: all of this version's templates, and the custom proxy values.
	injector := get[corev1.ConfigMap](t, objs, "ConfigMap", "istio-system", "istio-sidecar-injector")
	if keys := sortedKeys(injector.Data); !slices.Equal(keys, []string{"config", "values"}) {
		t.Errorf("ConfigMap istio-sidecar-injector keys %v", keys)
	}
	var config struct {
		DefaultTemplates []string          `json:"defaultTemplates"`
		Policy           string            `json:"policy"`
		Templates        map[string]string `json:"templates"`
	}
	if err := yaml.Unmarshal([]byte(injector.Data["config"]), &config); err != nil {
		t.Fatal(err)
	}
	wantTemplates := []string{"agentgateway", "agentgateway-waypoint", "gateway", "grpc-agent", "grpc-simple", "kube-gateway", "sidecar", "waypoint"}
	if got := sortedKeys(config.Templates); !slices.Equal(got, wantTemplates) {
		t.Errorf("injector templates %v, want %v", got, wantTemplates)
	}
	if !slices.Equal(config.DefaultTemplates, []string{"sidecar"}) || config.Policy != "enabled" {
		t.Errorf("injector defaultTemplates %v policy %q", config.DefaultTemplates, config.Policy)
	}
	if !strings.Contains(config.Templates["sidecar"], "istio-proxy") {
		t.Errorf("the sidecar template does not name istio-proxy")
	}
	var injectorValues map[string]any
	if err := json.Unmarshal([]byte(injector.Data["values"]), &injectorValues); err != nil {
		t.Fatal(err)
	}
	if got := sortedKeys(injectorValues); !slices.Equal(got, []string{"gateways", "global", "pilot", "revision", "sidecarInjectorWebhook"}) {
		t.Errorf("injector values keys %v", got)
	}
	wantResources := map[string]any{
		"requests": map[string]any{"cpu": "50m", "memory": "64Mi"},
		"limits":   map[string]any{"cpu": "1", "memory": "256Mi"},
	}
	for field, want := range map[string]any{
		"global.proxy.resources":           wantResources,
		"global.hub":                       "localhost:5000/istio",
		"global.tag":                       "1.31.0-fixture",
		"global.meshID":                    meshID,
		"global.network":                   network,
		"global.multiCluster.clusterName":  "mesh",
		"global.proxy.image":               "proxyv2",
		"revision":                         "",
		"sidecarInjectorWebhook.templates": map[string]any{},
	} {
		if got := lookup(injectorValues, field); !reflect.DeepEqual(got, want) {
			t.Errorf("injector values %s = %#v, want %#v", field, got, want)
		}
	}

	// The istiod Deployment runs the explicit image.
	dep := get[appsv1.Deployment](t, objs, "Deployment", "istio-system", "istiod")
	if got := image(t, dep, "discovery"); got != "localhost:5000/istio/pilot:1.31.0-fixture" {
		t.Errorf("istiod image %s", got)
	}
}

func TestMeshControlPlaneDefaults(t *testing.T) {
	objs, err := MeshControlPlane(MeshOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dep := get[appsv1.Deployment](t, objs, "Deployment", "istio-system", "istiod")
	if got, want := image(t, dep, "discovery"), DefaultHub+"/pilot:"+Version(); got != want {
		t.Errorf("istiod image %s, want %s", got, want)
	}
	// DefaultHub is the chart's own hub; left alone, the chart runs "latest".
	raw, err := Render(Discovery, "istiod", DefaultNamespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	dep = get[appsv1.Deployment](t, raw, "Deployment", "istio-system", "istiod")
	if got, want := image(t, dep, "discovery"), DefaultHub+"/pilot:latest"; got != want {
		t.Errorf("the chart's own istiod image %s, want %s", got, want)
	}
}

func TestMeshControlPlaneRevision(t *testing.T) {
	objs, err := MeshControlPlane(MeshOptions{Revision: "canary"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Deployment istio-system/istiod-canary", "Service istio-system/istiod-canary",
		"ConfigMap istio-system/istio-canary", "ConfigMap istio-system/istio-sidecar-injector-canary",
		"MutatingWebhookConfiguration /istio-sidecar-injector-canary"} {
		if !slices.Contains(inventory(objs), want) {
			t.Errorf("revision canary lacks %s: %v", want, inventory(objs))
		}
	}
	mesh := get[corev1.ConfigMap](t, objs, "ConfigMap", "istio-system", "istio-canary")
	if !strings.Contains(mesh.Data["mesh"], "discoveryAddress: istiod-canary.istio-system.svc:15012") {
		t.Errorf("mesh config of revision canary:\n%s", mesh.Data["mesh"])
	}
}

func TestMeshControlPlaneCompatibilityVersion(t *testing.T) {
	current, err := MeshControlPlane(MeshOptions{})
	if err != nil {
		t.Fatal(err)
	}
	older, err := MeshControlPlane(MeshOptions{CompatibilityVersion: fmt.Sprintf("1.%d", Minor()-1)})
	if err != nil {
		t.Fatal(err)
	}
	// The newest compatibility profile restores, among others, this pilot setting.
	if got := env(t, current, "PILOT_ENABLE_STRICT_GATEWAY_MERGING"); got != "" {
		t.Errorf("current defaults set PILOT_ENABLE_STRICT_GATEWAY_MERGING=%q", got)
	}
	if got := env(t, older, "PILOT_ENABLE_STRICT_GATEWAY_MERGING"); got != "false" {
		t.Errorf("compatibility version 1.%d: PILOT_ENABLE_STRICT_GATEWAY_MERGING=%q, want false", Minor()-1, got)
	}
	if _, err := MeshControlPlane(MeshOptions{CompatibilityVersion: "1.2"}); err == nil {
		t.Errorf("an unknown compatibility version renders")
	}
}

func assertNoIstiod(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == "Deployment" || o.GetKind() == "CustomResourceDefinition" ||
			(o.GetKind() == "ConfigMap" && (o.GetName() == "istio" || o.GetName() == "istio-sidecar-injector")) {
			t.Errorf("the remote profile renders %s %s", o.GetKind(), o.GetName())
		}
	}
}

// assertInjector checks the injector's webhooks, each with check (an empty answer is
// a pass).
func assertInjector(t *testing.T, objs []*unstructured.Unstructured, name string, webhooks int,
	check func(admissionv1.WebhookClientConfig) string) {
	t.Helper()
	mwc := get[admissionv1.MutatingWebhookConfiguration](t, objs, "MutatingWebhookConfiguration", "", name)
	if len(mwc.Webhooks) != webhooks {
		t.Errorf("%s has %d webhooks, want %d", name, len(mwc.Webhooks), webhooks)
	}
	for _, w := range mwc.Webhooks {
		if msg := check(w.ClientConfig); msg != "" {
			t.Errorf("%s webhook %s: %s", name, w.Name, msg)
		}
		if *w.FailurePolicy != admissionv1.Fail {
			t.Errorf("%s webhook %s failurePolicy %s", name, w.Name, *w.FailurePolicy)
		}
	}
}

// assertValidator checks the base chart's validator: calling service (in istio-system,
// path /validate) or url, with caBundle.
func assertValidator(t *testing.T, objs []*unstructured.Unstructured, service string, caBundle []byte, url string) {
	t.Helper()
	vwc := get[admissionv1.ValidatingWebhookConfiguration](t, objs, "ValidatingWebhookConfiguration", "", "istiod-default-validator")
	if len(vwc.Webhooks) != 1 || vwc.Webhooks[0].Name != "validation.istio.io" {
		t.Fatalf("istiod-default-validator webhooks %+v", vwc.Webhooks)
	}
	cc := vwc.Webhooks[0].ClientConfig
	if service != "" {
		want := admissionv1.ServiceReference{Namespace: "istio-system", Name: service, Path: ptr("/validate")}
		if cc.Service == nil || !reflect.DeepEqual(*cc.Service, want) || cc.URL != nil {
			t.Errorf("istiod-default-validator calls %+v %v, want %+v", cc.Service, cc.URL, want)
		}
	} else if cc.Service != nil || cc.URL == nil || *cc.URL != url {
		t.Errorf("istiod-default-validator calls %+v %v, want %s", cc.Service, cc.URL, url)
	}
	if string(cc.CABundle) != string(caBundle) {
		t.Errorf("istiod-default-validator caBundle %q, want %q", cc.CABundle, caBundle)
	}
	// Without a CA bundle the chart fails open until istiod patches its own; with one, closed.
	wantPolicy := admissionv1.Ignore
	if len(caBundle) > 0 {
		wantPolicy = admissionv1.Fail
	}
	if p := vwc.Webhooks[0].FailurePolicy; p == nil || *p != wantPolicy {
		t.Errorf("istiod-default-validator failurePolicy %v, want %s", p, wantPolicy)
	}
}

// get finds one object and converts it to its typed form.
func get[T any](t *testing.T, objs []*unstructured.Unstructured, kind, namespace, name string) *T {
	t.Helper()
	u := Find(objs, kind, namespace, name)
	if u == nil {
		t.Fatalf("no %s %s/%s among %v", kind, namespace, name, inventory(objs))
	}
	out := new(T)
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, out); err != nil {
		t.Fatalf("converting %s %s: %v", kind, name, err)
	}
	return out
}

func image(t *testing.T, dep *appsv1.Deployment, container string) string {
	t.Helper()
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == container {
			return c.Image
		}
	}
	t.Fatalf("Deployment %s has no container %s", dep.Name, container)
	return ""
}

func env(t *testing.T, objs []*unstructured.Unstructured, name string) string {
	t.Helper()
	dep := get[appsv1.Deployment](t, objs, "Deployment", "istio-system", "istiod")
	for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

// inventory lists objects as "Kind namespace/name", in Render's order.
func inventory(objs []*unstructured.Unstructured) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		out = append(out, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
	}
	return out
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// lookup follows a dotted path through maps and, for numeric elements, lists.
func lookup(v any, field string) any {
	for _, key := range strings.Split(field, ".") {
		switch c := v.(type) {
		case map[string]any:
			v = c[key]
		case []any:
			var i int
			if _, err := fmt.Sscan(key, &i); err != nil || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(l.Addr().String())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return port
}

func ptr[T any](v T) *T { return &v }
