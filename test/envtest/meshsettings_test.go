package envtest

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// meshValues are the mesh control plane's own settings, as a mesh's istiod is
// installed with them (helm install istiod istio/istiod --values): each must reach the
// data-plane cluster's istiod unchanged, apart from the discovery address, which an
// external istiod's mesh sets to where the mesh istiod is exposed.
const meshValues = `
meshConfig:
  accessLogFile: /dev/stdout
  outboundTrafficPolicy:
    mode: REGISTRY_ONLY
  extensionProviders:
  - name: otel
    opentelemetry:
      service: opentelemetry-collector.observability.svc.cluster.local
      port: 4317
  defaultConfig:
    discoveryAddress: istiod.istio-system.mesh.localhost:15012
    proxyMetadata:
      ISTIO_META_DNS_CAPTURE: "true"
global:
  externalIstiod: true
  caAddress: istiod.istio-system.mesh.localhost:15012
  proxy:
    logLevel: warning
    resources:
      requests:
        cpu: 50m
        memory: 64Mi
      limits:
        cpu: "1"
        memory: 256Mi
`

// configMapIn reads a ConfigMap of the control plane namespace, nil when it is absent.
func configMapIn(c client.Client, name string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{}
	if err := c.Get(ctx(), types.NamespacedName{Namespace: ns, Name: name}, cm); err != nil {
		Expect(apierrors.IsNotFound(err)).To(BeTrue(), "%v", err)
		return nil
	}
	return cm
}

func decodeJSON(raw string) map[string]any {
	out := map[string]any{}
	Expect(json.Unmarshal([]byte(raw), &out)).To(Succeed(), raw)
	return out
}

func decodeYAML(raw string) map[string]any {
	out := map[string]any{}
	Expect(yaml.Unmarshal([]byte(raw), &out)).To(Succeed(), raw)
	return out
}

// nested returns the map at a path of nested maps, creating none.
func nested(m map[string]any, path ...string) map[string]any {
	for _, k := range path {
		next, ok := m[k].(map[string]any)
		Expect(ok).To(BeTrue(), "no map at %s", strings.Join(path, "."))
		m = next
	}
	return m
}

// cluster2Status is cluster-2's entry of status.clusters, empty while it has none.
func cluster2Status() v1beta1.ClusterStatus {
	for _, cs := range getMeshConfig().Status.Clusters {
		if cs.ClusterID == "cluster-2" {
			return cs
		}
	}
	return v1beta1.ClusterStatus{}
}

// meshSettingsOfCluster2 is cluster-2's status.clusters[].meshSettings.
func meshSettingsOfCluster2() string { return cluster2Status().MeshSettings }

var _ = Describe("the mesh control plane's injector and mesh config", Ordered, func() {
	var (
		rc *remoteCluster
		// created are the mesh cluster's objects this test installed, to remove at the end.
		created []client.Object
		// tag is the Istio version of the mesh istiod's image, not the chart's version
		// the operator falls back to.
		tag string
		// chart is the operator's fallback: the version of Istio's chart in this build.
		chart = fmt.Sprintf("1.%d.0", istiochart.Minor())
		// chartSource says that a part comes from Istio's chart in this build.
		chartSource = "from Istio's istio-discovery chart " + istiochart.Version() + " in this operator"
	)

	BeforeAll(func() {
		rc = remotes["cluster-2"]
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		tag = fmt.Sprintf("1.%d.1", min(istiochart.Minor(), render.NewestMinor))
		Expect(tag).NotTo(Equal(chart))
		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{"cluster-2": entry(1)}}})).To(Succeed())
		DeferCleanup(func() {
			removeMeshConfig()
			Eventually(rc.ownedNames).Should(BeEmpty())
			for _, o := range created {
				Expect(client.IgnoreNotFound(mesh.Delete(ctx(), o))).To(Succeed())
			}
		})
	})

	It("renders Istio's own chart's ConfigMaps while the mesh cluster has no such ConfigMaps, and says so", func() {
		for _, name := range []string{"istio", "istio-sidecar-injector"} {
			if configMapIn(mesh, name) != nil {
				Skip("the mesh cluster already has ConfigMap " + name)
			}
		}
		Eventually(meshSettingsOfCluster2).Should(Equal(
			"nothing copied from the mesh control plane (revision default); " +
				"injector config " + chartSource + ": the mesh cluster has no ConfigMap istio-system/istio-sidecar-injector; " +
				"mesh config " + chartSource + ": the mesh cluster has no ConfigMap istio-system/istio; " +
				"Istio " + chart + " " + chartSource + ": the mesh cluster has no Deployment istio-system/istiod"))
		Eventually(func() *corev1.ConfigMap { return configMapIn(rc.client, "istio-sidecar-injector") }).ShouldNot(BeNil())
		Expect(configMapIn(rc.client, "istio").Data["mesh"]).NotTo(ContainSubstring("accessLogFile"))

		// Every template of Istio's chart, as the chart renders it.
		objs, err := istiochart.Render(istiochart.Discovery, "istiod", ns, map[string]any{"global": map[string]any{"tag": chart}})
		Expect(err).NotTo(HaveOccurred())
		chartInjector := istiochart.Find(objs, "ConfigMap", ns, "istio-sidecar-injector")
		Expect(chartInjector).NotTo(BeNil())
		chartConfig, _, _ := unstructured.NestedString(chartInjector.Object, "data", "config")
		Expect(configMapIn(rc.client, "istio-sidecar-injector").Data["config"]).To(Equal(chartConfig))
		templates := nested(decodeYAML(chartConfig), "templates")
		for _, name := range []string{"sidecar", "gateway", "grpc-simple", "grpc-agent", "waypoint", "kube-gateway"} {
			Expect(templates).To(HaveKey(name))
		}
		Expect(rc.deployment().Spec.Template.Spec.Containers[0].Image).To(HaveSuffix("/pilot:" + chart))
		Eventually(func() string { return cluster2Status().IstioVersion }).Should(Equal(chart))
	})

	It("applies nothing new for a version that neither the mesh cluster nor Istio's chart has templates for, and says so", func() {
		for _, name := range []string{"istio", "istio-sidecar-injector"} {
			if configMapIn(mesh, name) != nil {
				Skip("the mesh cluster already has ConfigMap " + name)
			}
		}
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))
		before := rc.deployment()
		other := fmt.Sprintf("1.%d.3", istiochart.Minor()-3)
		setVersion := func(v string) {
			Eventually(func() error {
				mc := getMeshConfig()
				mc.Spec.Version = v
				return mesh.Update(ctx(), mc)
			}).Should(Succeed())
		}
		setVersion(other)
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("False/NoTemplateSource"))
		Expect(clusterConditionMessage("cluster-2", v1beta1.ConditionApplied)).To(And(
			ContainSubstring("Istio "+other+" (from spec.version)"),
			ContainSubstring("istio-system/istio-sidecar-injector and istio-system/istio"),
			ContainSubstring("set spec.version to 1.%d.x", istiochart.Minor()),
			ContainSubstring("install Istio 1.%d in the mesh cluster", istiochart.Minor()-3)))
		Eventually(func() bool {
			events := &corev1.EventList{}
			Expect(mesh.List(ctx(), events)).To(Succeed())
			for _, e := range events.Items {
				if e.Reason == "NoTemplateSource" && e.Type == corev1.EventTypeWarning {
					return true
				}
			}
			return false
		}).Should(BeTrue(), "no warning event NoTemplateSource")
		Consistently(func() string { return rc.deployment().Spec.Template.Spec.Containers[0].Image }, 2*time.Second).
			Should(Equal(before.Spec.Template.Spec.Containers[0].Image))
		Expect(rc.deployment().Generation).To(Equal(before.Generation), "istiod's spec changed")
		Expect(cluster2Status().IstioVersion).To(Equal(chart))

		setVersion("")
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))
	})

	It("copies them from the mesh control plane, with only the per-cluster fields replaced", func() {
		values, err := istiochart.ParseValues(meshValues)
		Expect(err).NotTo(HaveOccurred())
		objs, err := istiochart.MeshControlPlane(istiochart.MeshOptions{ClusterID: meshClusterID, Network: "network-1",
			MeshID: "mesh-1", Tag: tag, Values: values})
		Expect(err).NotTo(HaveOccurred())
		for _, u := range objs {
			if u.GetKind() != "ConfigMap" && (u.GetKind() != "Deployment" || u.GetName() != "istiod") {
				continue
			}
			var obj client.Object = &corev1.ConfigMap{}
			if u.GetKind() == "Deployment" {
				obj = &appsv1.Deployment{}
			}
			Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, obj)).To(Succeed())
			err := mesh.Create(ctx(), obj)
			if apierrors.IsAlreadyExists(err) {
				continue // the mesh cluster has it already: keep it, and leave it there
			}
			Expect(err).NotTo(HaveOccurred())
			created = append(created, obj)
		}
		source := func(name string) *unstructured.Unstructured {
			u := istiochart.Find(objs, "ConfigMap", ns, name)
			Expect(u).NotTo(BeNil(), "Istio's chart renders no ConfigMap %s", name)
			return u
		}
		meshData, _, _ := unstructured.NestedStringMap(source("istio").Object, "data")
		injectorData, _, _ := unstructured.NestedStringMap(source("istio-sidecar-injector").Object, "data")

		start := time.Now()
		Eventually(meshSettingsOfCluster2, 10*time.Second).Should(Equal(
			"injector config and mesh config copied from istio-system/istio-sidecar-injector and istio-system/istio (revision default); " +
				"Istio " + tag + " from the mesh istiod istio-system/istiod"))
		GinkgoWriter.Printf("the mesh's settings reached cluster-2's status %s after they were installed\n", time.Since(start))

		// The mesh config: the mesh's, pointing at the local istiod.
		Eventually(func() string { return configMapIn(rc.client, "istio").Data["mesh"] }, 10*time.Second).Should(ContainSubstring("REGISTRY_ONLY"))
		local := configMapIn(rc.client, "istio")
		want := decodeYAML(meshData["mesh"])
		Expect(nested(want, "defaultConfig")["discoveryAddress"]).To(Equal("istiod.istio-system.mesh.localhost:15012"))
		nested(want, "defaultConfig")["discoveryAddress"] = "istiod.istio-system.svc:15012"
		got := decodeYAML(local.Data["mesh"])
		Expect(got).To(Equal(want))
		Expect(got).To(HaveKeyWithValue("accessLogFile", "/dev/stdout"))
		Expect(nested(got, "defaultConfig", "proxyMetadata")).To(HaveKeyWithValue("ISTIO_META_DNS_CAPTURE", "true"))
		Expect(decodeYAML(local.Data["meshNetworks"])).To(Equal(decodeYAML(meshData["meshNetworks"])))

		// The injector: every template of the mesh's, and its values with only the
		// per-cluster overlay.
		injector := configMapIn(rc.client, "istio-sidecar-injector")
		Expect(injector.Data["config"]).To(Equal(injectorData["config"]))
		templates := nested(decodeYAML(injector.Data["config"]), "templates")
		for _, name := range []string{"sidecar", "gateway", "grpc-simple", "grpc-agent", "waypoint", "kube-gateway"} {
			Expect(templates).To(HaveKey(name))
		}
		wantValues := decodeJSON(injectorData["values"])
		global := nested(wantValues, "global")
		Expect(global).To(HaveKeyWithValue("caAddress", "istiod.istio-system.mesh.localhost:15012"))
		Expect(global).To(HaveKeyWithValue("externalIstiod", true))
		delete(global, "caAddress")
		delete(global, "remotePilotAddress")
		delete(wantValues, "istiodRemote")
		global["externalIstiod"], global["configCluster"] = false, false
		nested(global, "multiCluster")["clusterName"] = "cluster-2"
		Expect(global).To(HaveKeyWithValue("network", "network-1")) // the entry names none: the mesh's is kept
		Expect(decodeJSON(injector.Data["values"])).To(Equal(wantValues))
		Expect(nested(decodeJSON(injector.Data["values"]), "global", "proxy", "resources")).To(Equal(map[string]any{
			"requests": map[string]any{"cpu": "50m", "memory": "64Mi"}, "limits": map[string]any{"cpu": "1", "memory": "256Mi"}}))

		// istiod is the mesh istiod's version.
		Expect(rc.deployment().Spec.Template.Spec.Containers[0].Image).To(HaveSuffix("/pilot:" + tag))
		Eventually(func() string { return cluster2Status().IstioVersion }).Should(Equal(tag))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionApplied)).To(Equal("True/Applied"))
	})

	It("carries a change of the mesh's ConfigMaps or istiod to the cluster within seconds", func() {
		edit := func(obj client.Object, change func()) time.Time {
			Eventually(func() error {
				Expect(mesh.Get(ctx(), client.ObjectKeyFromObject(obj), obj)).To(Succeed())
				change()
				return mesh.Update(ctx(), obj)
			}).Should(Succeed())
			return time.Now()
		}
		meshCM := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istio"}}
		start := edit(meshCM, func() {
			meshCM.Data["mesh"] = strings.Replace(meshCM.Data["mesh"], "REGISTRY_ONLY", "ALLOW_ANY", 1)
		})
		Eventually(func() string { return configMapIn(rc.client, "istio").Data["mesh"] }, 10*time.Second, 50*time.Millisecond).
			Should(And(ContainSubstring("mode: ALLOW_ANY"), ContainSubstring("discoveryAddress: istiod.istio-system.svc:15012")))
		GinkgoWriter.Printf("a changed mesh config reached cluster-2 after %s\n", time.Since(start))

		injectorCM := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istio-sidecar-injector"}}
		start = edit(injectorCM, func() {
			injectorCM.Data["values"] = strings.Replace(injectorCM.Data["values"], `"memory": "256Mi"`, `"memory": "512Mi"`, 1)
		})
		Eventually(func() any {
			v := decodeJSON(configMapIn(rc.client, "istio-sidecar-injector").Data["values"])
			return nested(v, "global", "proxy", "resources", "limits")["memory"]
		}, 10*time.Second, 50*time.Millisecond).Should(Equal("512Mi"))
		GinkgoWriter.Printf("changed injector values reached cluster-2 after %s\n", time.Since(start))

		newer := strings.TrimSuffix(tag, ".1") + ".2"
		istiod := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "istiod"}}
		start = edit(istiod, func() {
			c := &istiod.Spec.Template.Spec.Containers[0]
			c.Image = strings.TrimSuffix(c.Image, tag) + newer
		})
		Eventually(func() string { return rc.deployment().Spec.Template.Spec.Containers[0].Image }, 10*time.Second, 50*time.Millisecond).
			Should(HaveSuffix("/pilot:" + newer))
		GinkgoWriter.Printf("the mesh istiod's new version reached cluster-2 after %s\n", time.Since(start))
		Eventually(meshSettingsOfCluster2).Should(HaveSuffix("Istio " + newer + " from the mesh istiod istio-system/istiod"))
	})

	It("falls back to Istio's chart once the mesh's ConfigMaps are gone", func() {
		for _, o := range created {
			Expect(client.IgnoreNotFound(mesh.Delete(ctx(), o))).To(Succeed())
		}
		if configMapIn(mesh, "istio") != nil {
			Skip("the mesh cluster had ConfigMap istio before this test")
		}
		Eventually(func() string { return configMapIn(rc.client, "istio").Data["mesh"] }, 10*time.Second).ShouldNot(ContainSubstring("accessLogFile"))
		Eventually(meshSettingsOfCluster2).Should(ContainSubstring("mesh config " + chartSource))
	})
})
