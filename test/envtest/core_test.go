package envtest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/ca/catest"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// setMutualAccess turns mutual access of cluster-2 on or off.
func setMutualAccess(on bool) {
	updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
		e := mc.Spec.ExternalIstiodConfigurations["cluster-2"]
		e.MutualAccess = on
		mc.Spec.ExternalIstiodConfigurations["cluster-2"] = e
	})
}

func entry(replicas int32) v1beta1.ExternalIstiodConfiguration {
	return v1beta1.ExternalIstiodConfiguration{
		Replicas: ptrTo(replicas),
		Resources: &corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("2Gi")}},
	}
}

var _ = Describe("remote control planes", Ordered, func() {
	// before is each cluster's Deployments' restart annotations and generations when
	// these tests begin: other tests may have switched a cluster, and restarted its
	// gateways, before.
	before := map[string]map[string]string{}
	BeforeAll(func() {
		for id, rc := range remotes {
			before[id] = rc.restarts()
		}
	})
	// generation is a Deployment's generation after n more restarts, as "@N".
	generation := func(id, deploy string, n int) string {
		_, gen, found := strings.Cut(before[id][deploy], "@")
		Expect(found).To(BeTrue(), deploy)
		g, err := strconv.Atoi(gen)
		Expect(err).NotTo(HaveOccurred())
		return fmt.Sprintf("@%d", g+n)
	}
	It("ignores an ASMMeshConfig that is not named default, and says so", func() {
		other := &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "other"},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{"cluster-2": entry(1)}}}
		Expect(mesh.Create(ctx(), other)).To(Succeed())
		Eventually(func() string {
			Expect(mesh.Get(ctx(), client.ObjectKeyFromObject(other), other)).To(Succeed())
			for _, c := range other.Status.Conditions {
				if c.Type == v1beta1.ConditionReady {
					return string(c.Status) + "/" + c.Reason
				}
			}
			return ""
		}).Should(Equal("False/" + controller.ReasonIgnored))
		Consistently(remotes["cluster-2"].ownedNames, 2*time.Second).Should(BeEmpty())
		Expect(other.Finalizers).To(BeEmpty())
		Expect(mesh.Delete(ctx(), other)).To(Succeed())
	})

	It("installs a complete istiod in cluster-2 and nothing in cluster-1", func() {
		mc := &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{"cluster-2": entry(2)}}}
		Expect(mesh.Create(ctx(), mc)).To(Succeed())
		Eventually(remotes["cluster-2"].ownedNames).Should(Equal(installed))
		Eventually(func() []string { return getMeshConfig().Finalizers }).Should(ContainElement(controller.Finalizer))
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionConnected)).To(Equal("True/Connected"))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionIstiodReady)).To(Equal("False/Progressing"))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionSwitched)).To(Equal("False/" + controller.ReasonWaitingForIstiod))
		Eventually(readyCondition).Should(Equal("False/" + controller.ReasonClustersNotReady))
		// Nothing of the remote profile's changes before the switch.
		remotes["cluster-2"].expectOneInjector(meshInjector(remotes["cluster-2"]))
		Expect(remotes["cluster-2"].validators()).To(Equal(map[string]string{
			"istiod-default-validator": "service/istio-system/istiod/validate ca="}))
		Expect(remotes["cluster-2"].address()).To(Equal("ClusterIP map[] slices=1"))
		Expect(remotes["cluster-2"].lead()).To(Equal(meshClusterID))
		Expect(remotes["cluster-2"].restarts()).To(HaveKeyWithValue("istio-system/istio-ingressgateway",
			before["cluster-2"]["istio-system/istio-ingressgateway"]))
		Expect(remotes["cluster-1"].ownedNames()).To(BeEmpty())

		d := remotes["cluster-2"].deployment()
		Expect(*d.Spec.Replicas).To(BeEquivalentTo(2))
		Expect(d.Spec.Template.Spec.Containers[0].Env).To(ContainElement(corev1.EnvVar{Name: "CLUSTER_ID", Value: "cluster-2"}))
		Expect(getMeshConfig().Status.Clusters[0].AppliedHash).NotTo(BeEmpty())
		m := clusterMetrics("cluster-2")
		Expect(m).To(HaveKeyWithValue("cluster_connected", 1.0))
		Expect(m).To(HaveKeyWithValue("cluster_switched", 0.0))
		Expect(m).To(HaveKeyWithValue("istiod_desired_replicas", 2.0))
		Expect(m["apply_duration_seconds_count"]).To(BeNumerically(">", 0))
		Expect(clusterMetrics("cluster-1")).To(BeEmpty())
	})

	It("switches injection to the local istiod once it is ready, and restarts the gateways once", func() {
		rc := remotes["cluster-2"]
		rc.markAvailable()
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionIstiodReady) }).Should(Equal("True/Available"))
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionSwitched) }).Should(Equal("True/" + controller.ReasonSwitched))
		Eventually(readyCondition).Should(Equal("True/Ready"))
		mc := getMeshConfig()
		Expect(mc.Status.ControlPlanes).To(Equal("1/1"))
		Expect(mc.Status.Clusters[0].ReadyReplicas).To(BeEquivalentTo(2))
		Expect(mc.Status.Clusters[0].GatewaysRestarted).To(Equal(gatewayNames))
		Expect(mc.Status.Clusters[0].SwitchedAt).NotTo(BeNil())

		rc.expectOneInjector(localInjector(rc))
		remotes["cluster-1"].expectOneInjector(meshIstiodURL("cluster-1"))
		// The remote profile's validator is taken over in place too, and the mesh
		// istiod is no longer named to lead the cluster.
		Expect(rc.validators()).To(Equal(map[string]string{
			"istiod-default-validator": "service/istio-system/istiod/validate ca=local-root-of-cluster-2"}))
		// The remote profile's Service istiod, the discovery address sidecars are
		// given, leads to the local istiod; its EndpointSlice is out of play.
		Expect(rc.address()).To(Equal(localAddress))
		Expect(remotes["cluster-1"].address()).To(Equal("ExternalName localhost"))
		Expect(clusterConditionMessage("cluster-2", v1beta1.ConditionSwitched)).To(ContainSubstring("remote profile (selector-less, with 1 EndpointSlice(s)"))
		Expect(rc.lead()).To(Equal("cluster-2"))
		Expect(remotes["cluster-1"].lead()).To(Equal(meshClusterID))
		Expect(rc.ownedNames()).To(Equal(switchedIstiod))
		restarts := rc.restarts()
		for _, gw := range gatewayNames {
			Expect(restarts[gw]).To(MatchRegexp(`^switch-\d{8}T\d{6}Z`+generation("cluster-2", gw, 1)+`$`), gw)
		}
		Expect(restarts["default/httpbin"]).To(Equal(before["cluster-2"]["default/httpbin"]), "an ordinary workload is not restarted")
		Expect(eventReasons()).To(ContainElements(controller.ReasonConnected, controller.ReasonApplied, controller.ReasonSwitched, controller.ReasonGatewaysRestarted))
		m := clusterMetrics("cluster-2")
		for _, gauge := range []string{"cluster_connected", "cluster_ready", "cluster_switched"} {
			Expect(m).To(HaveKeyWithValue(gauge, 1.0))
		}
		Expect(m).To(HaveKeyWithValue("istiod_ready_replicas", 2.0))
		Expect(m).To(HaveKeyWithValue("gateway_restarts_total{direction=switch}", float64(len(gatewayNames))))
	})

	It("restarts the gateways exactly once, also when the manager restarts", func() {
		rc := remotes["cluster-2"]
		before := rc.restarts()
		stopMgr()
		Eventually(mgrDone).Should(BeClosed())
		startManager()
		count := reconciles()
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Annotations = map[string]string{"example.com/resync": "after-restart"}
		})
		Eventually(reconciles).Should(BeNumerically(">", count))
		Consistently(rc.restarts, "2s").Should(Equal(before))
		Expect(clusterMetrics("cluster-2")).To(HaveKeyWithValue("gateway_restarts_total{direction=switch}", float64(len(gatewayNames))))
		rc.expectOneInjector(localInjector(rc))
		Expect(readyCondition()).To(Equal("True/Ready"))
	})

	It("keeps the injector's caBundle equal to the root istiod publishes", func() {
		rc := remotes["cluster-2"]
		root := &corev1.ConfigMap{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istio-ca-root-cert"}, root)).To(Succeed())
		root.Data["root-cert.pem"] = "rotated-root"
		Expect(rc.client.Update(ctx(), root)).To(Succeed())
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Annotations = map[string]string{"example.com/resync": "root-rotated"}
		})
		Eventually(rc.injectors).Should(HaveKeyWithValue(injectionCases[0].name, []string{"service/istio-system/istiod ca=rotated-root"}))
		rc.markAvailable() // istiod publishes its usual root again
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Annotations = map[string]string{"example.com/resync": "root-restored"}
		})
		Eventually(rc.injectors).Should(HaveKeyWithValue(injectionCases[0].name, []string{localInjector(rc)}))
	})

	It("gives cluster-2's istiod its own intermediate of the mesh CA, and never the mesh CA's key", func() {
		rc := remotes["cluster-2"]
		cacerts := &corev1.Secret{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, cacerts)).To(Succeed())
		Expect(verifiesAgainstMeshRoot(cacerts.Data)).To(Succeed())
		rememberSecret(cacerts.Data["ca-key.pem"])
		Expect(cacerts.Data["root-cert.pem"]).To(Equal(meshCA["root-cert.pem"]))
		secrets := &corev1.SecretList{}
		Expect(rc.client.List(ctx(), secrets)).To(Succeed())
		for _, s := range secrets.Items {
			for k, v := range s.Data {
				Expect(bytes.Contains(v, meshCA["ca-key.pem"])).To(BeFalse(), "%s/%s[%s] holds the mesh CA's key", s.Namespace, s.Name, k)
			}
		}
		Expect(clusterCondition("cluster-2", v1beta1.ConditionMeshTrust)).To(Equal("True/" + controller.ReasonIntermediateIssued))
		Expect(rc.deployment().Spec.Template.Annotations).To(HaveKey(render.CACertsAnnotation))
	})

	It("issues a new intermediate when the mesh CA changes, and rolls istiod", func() {
		rc := remotes["cluster-2"]
		before := rc.deployment().Spec.Template.Annotations[render.CACertsAnnotation]
		meshCA = catest.MeshCACerts(365 * 24 * time.Hour)
		rememberSecret(meshCA["ca-key.pem"])
		caSecret := &corev1.Secret{}
		Expect(mesh.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, caSecret)).To(Succeed())
		caSecret.Data = meshCA
		Expect(mesh.Update(ctx(), caSecret)).To(Succeed())
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Annotations = map[string]string{"example.com/resync": "mesh-ca-rotated"}
		})
		Eventually(func() error {
			cacerts := &corev1.Secret{}
			Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, cacerts)).To(Succeed())
			return verifiesAgainstMeshRoot(cacerts.Data)
		}).Should(Succeed())
		Eventually(func() string { return rc.deployment().Spec.Template.Annotations[render.CACertsAnnotation] }).ShouldNot(Equal(before))
		rc.markAvailable()
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("does not start or change istiod while the mesh cluster has no CA, and says why", func() {
		replicas := *remotes["cluster-2"].deployment().Spec.Replicas
		caSecret := &corev1.Secret{}
		Expect(mesh.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, caSecret)).To(Succeed())
		Expect(mesh.Delete(ctx(), caSecret)).To(Succeed())
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(replicas + 2)
		})
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("False/" + controller.ReasonNoMeshCA))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionMeshTrust)).To(Equal("False/" + controller.ReasonNoMeshCA))
		Expect(clusterMetrics("cluster-2")["apply_errors_total{reason="+controller.ReasonNoMeshCA+"}"]).To(BeNumerically(">=", 1))
		Eventually(func() string { return condition(getMeshConfig(), v1beta1.ConditionStalled) }).Should(HavePrefix("True"))
		Consistently(func() int32 { return *remotes["cluster-2"].deployment().Spec.Replicas }, "2s").Should(Equal(replicas))

		By("accepting an independent root when the spec says so, with a warning")
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.AllowIndependentRootCA = true })
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionMeshTrust) }).Should(Equal("False/" + controller.ReasonIndependentRoot))
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/" + controller.ReasonApplied))
		Eventually(func() int32 { return *remotes["cluster-2"].deployment().Spec.Replicas }).Should(Equal(replicas + 2))
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.AllowIndependentRootCA = false })
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("False/" + controller.ReasonNoMeshCA))

		Expect(mesh.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: ns}, Data: meshCA})).To(Succeed())
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(replicas) })
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionMeshTrust) }).Should(Equal("True/" + controller.ReasonIntermediateIssued))
		remotes["cluster-2"].markAvailable()
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("mirrors Istio configuration from the mesh cluster into cluster-2 only, and restores edited copies", func() {
		rc := remotes["cluster-2"]
		vs := istioObject("networking.istio.io/v1", "VirtualService", "reviews", map[string]any{
			"hosts": []any{"reviews"}, "http": []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": "reviews", "subset": "v1"}}}}}})
		ap := istioObject("security.istio.io/v1", "AuthorizationPolicy", "deny-all", map[string]any{})
		before := clusterMetrics("cluster-2")
		metric := func(key string) func() float64 { return func() float64 { return clusterMetrics("cluster-2")[key] } }
		Expect(mesh.Create(ctx(), vs)).To(Succeed())
		Expect(mesh.Create(ctx(), ap)).To(Succeed())
		Eventually(func() string { return rc.istioSpec(vs) }).Should(ContainSubstring(`"subset":"v1"`))
		Eventually(func() string { return rc.istioSpec(ap) }).Should(Equal("{}"))
		Expect(remotes["cluster-1"].istioSpec(vs)).To(BeEmpty())
		Eventually(func() int32 { return getMeshConfig().Status.Clusters[0].MirroredObjects }).Should(BeEquivalentTo(2))
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionConfigMirrored) }).Should(Equal("True/" + controller.ReasonMirrored))
		Expect(clusterMetrics("cluster-2")).To(HaveKeyWithValue("mirrored_objects", float64(getMeshConfig().Status.Clusters[0].MirroredObjects)))
		Eventually(metric("mirror_writes_total{operation=create}")).Should(BeNumerically(">=", before["mirror_writes_total{operation=create}"]+2))
		Eventually(metric("mirror_lag_seconds_count")).Should(BeNumerically(">", before["mirror_lag_seconds_count"]))

		By("following a change in the mesh cluster")
		Expect(mesh.Get(ctx(), client.ObjectKeyFromObject(vs), vs)).To(Succeed())
		vs.Object["spec"] = map[string]any{"hosts": []any{"reviews"}, "http": []any{map[string]any{"route": []any{
			map[string]any{"destination": map[string]any{"host": "reviews", "subset": "v2"}}}}}}
		Expect(mesh.Update(ctx(), vs)).To(Succeed())
		Eventually(func() string { return rc.istioSpec(vs) }).Should(ContainSubstring(`"subset":"v2"`))
		Eventually(metric("mirror_writes_total{operation=update}")).Should(BeNumerically(">", before["mirror_writes_total{operation=update}"]))

		By("reverting an edit and a deletion of a copy in cluster-2, by a repair of the two")
		settled()
		repaired := clusterMetrics("cluster-2")["repairs_total"]
		copyOf := vs.DeepCopy()
		Expect(rc.client.Get(ctx(), client.ObjectKeyFromObject(vs), copyOf)).To(Succeed())
		copyOf.Object["spec"] = map[string]any{"hosts": []any{"somewhere-else"}}
		Expect(rc.client.Update(ctx(), copyOf)).To(Succeed())
		Expect(rc.client.Delete(ctx(), ap.DeepCopy())).To(Succeed())
		Eventually(func() string { return rc.istioSpec(vs) }).Should(ContainSubstring(`"subset":"v2"`))
		Eventually(func() string { return rc.istioSpec(ap) }).Should(Equal("{}"))
		Eventually(metric("repairs_total")).Should(BeNumerically(">=", repaired+2))

		By("following deletions in the mesh cluster")
		Expect(mesh.Delete(ctx(), vs)).To(Succeed())
		Expect(mesh.Delete(ctx(), ap)).To(Succeed())
		Eventually(func() string { return rc.istioSpec(vs) }).Should(BeEmpty())
		Eventually(func() string { return rc.istioSpec(ap) }).Should(BeEmpty())
		Eventually(readyCondition).Should(Equal("True/Ready"))
		Eventually(metric("mirror_writes_total{operation=delete}")).Should(BeNumerically(">=", before["mirror_writes_total{operation=delete}"]+2))
		Eventually(metric("mirrored_objects")).Should(BeZero())
	})

	It("writes nothing on a resync that finds nothing to change", func() {
		before := remotes["cluster-2"].owned()
		count := reconciles()
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Annotations = map[string]string{"example.com/resync": time.Now().String()}
		})
		Eventually(reconciles).Should(BeNumerically(">", count))
		Expect(remotes["cluster-2"].owned()).To(Equal(before))
	})

	It("follows changes of replicas and resources", func() {
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			e := entry(3)
			e.Resources.Requests[corev1.ResourceMemory] = resource.MustParse("3Gi")
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = e
		})
		Eventually(func() string {
			d := remotes["cluster-2"].deployment()
			return fmt.Sprintf("%s/%d", d.Spec.Template.Spec.Containers[0].Resources.Requests.Memory(), *d.Spec.Replicas)
		}).Should(Equal("3Gi/3"))
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionIstiodReady) }).Should(Equal("False/Progressing"))
		remotes["cluster-2"].markAvailable()
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("prunes what it no longer renders: the PodDisruptionBudget when replicas drop to one", func() {
		rc := remotes["cluster-2"]
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(1) })
		Eventually(rc.ownedNames).ShouldNot(ContainElement("PodDisruptionBudget/istio-system/istiod"))
		Expect(rc.ownedNames()).To(HaveLen(len(switchedIstiod) - 1))
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(3) })
		Eventually(rc.ownedNames).Should(Equal(switchedIstiod))
		rc.markAvailable()
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("restores an owned object that was changed or deleted in the data-plane cluster, by a repair of the two", func() {
		rc := remotes["cluster-2"]
		settled()
		repaired := clusterMetrics("cluster-2")["repairs_total"]
		role := &rbacv1.Role{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istiod"}, role)).To(Succeed())
		Expect(rc.client.Delete(ctx(), role)).To(Succeed())
		cm := &corev1.ConfigMap{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istio"}, cm)).To(Succeed())
		mesh := cm.Data["mesh"]
		cm.Data["mesh"] = "defaultConfig: {discoveryAddress: elsewhere:15012}\n"
		Expect(rc.client.Update(ctx(), cm)).To(Succeed())
		Eventually(rc.ownedNames).Should(Equal(switchedIstiod))
		Eventually(func() string {
			Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istio"}, cm)).To(Succeed())
			return cm.Data["mesh"]
		}).Should(Equal(mesh))
		Eventually(func() float64 { return clusterMetrics("cluster-2")["repairs_total"] }).Should(BeNumerically(">=", repaired+2))
	})

	It("applies nothing while a stored object has both the conflicting field and entries, and says why", func() {
		// The admission rule refuses such an object; one stored before the rule existed
		// is made here by lifting the rule for a moment.
		withoutAdmissionRule("useDataPlaneKubeAPIForIstioResources", func() {
			updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
				mc.Spec.UseDataPlaneKubeAPIForIstioResources = true
				mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(4)
			})
		})
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).
			Should(Equal("False/" + controller.ReasonConflictingSettings))
		Expect(eventReasons()).To(ContainElement(controller.ReasonConflictingSettings))
		Consistently(func() int32 { return *remotes["cluster-2"].deployment().Spec.Replicas }, "2s").Should(BeEquivalentTo(3))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionApplied)).To(Equal("False/" + controller.ReasonConflictingSettings))
		// Status is still written once the rule is back: it needs a person.
		Eventually(func() string { return condition(getMeshConfig(), v1beta1.ConditionStalled) }).Should(ContainSubstring("useDataPlaneKubeAPIForIstioResources"))

		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.UseDataPlaneKubeAPIForIstioResources = false })
		Eventually(func() int32 { return *remotes["cluster-2"].deployment().Spec.Replicas }).Should(BeEquivalentTo(4))
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(3) })
		Eventually(func() int32 { return *remotes["cluster-2"].deployment().Spec.Replicas }).Should(BeEquivalentTo(3))
		remotes["cluster-2"].markAvailable()
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("writes nothing into a cluster whose API server refuses part of istiod, and says why", func() {
		rc := remotes["cluster-1"]
		policy := denyInjectorConfigMaps(rc)
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-1"] = entry(1) })
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionApplied) }).
			Should(Equal("False/" + controller.ReasonApplyRejected))
		Expect(rc.ownedNames()).To(BeEmpty())
		Eventually(func() string { return condition(getMeshConfig(), v1beta1.ConditionReady) }).Should(ContainSubstring("managed by the platform team"))
		Eventually(eventReasons).Should(ContainElement(controller.ReasonApplyRejected))
		Expect(clusterMetrics("cluster-1")["apply_errors_total{reason="+controller.ReasonApplyRejected+"}"]).To(BeNumerically(">=", 1))
		for _, o := range policy {
			Expect(rc.client.Delete(ctx(), o)).To(Succeed())
		}
	})

	It("installs a second entry in cluster-1 too", func() {
		Eventually(remotes["cluster-1"].ownedNames).Should(Equal(installedOneReplica))
		remotes["cluster-1"].markAvailable()
		Eventually(readyCondition).Should(Equal("True/Ready"))
		Expect(getMeshConfig().Status.ControlPlanes).To(Equal("2/2"))
	})

	It("removes everything from a cluster whose entry is removed, giving injection back first", func() {
		rc := remotes["cluster-1"]
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionSwitched) }).Should(Equal("True/" + controller.ReasonSwitched))
		rc.expectOneInjector(localInjector(rc))
		Expect(rc.address()).To(Equal(localAddress))
		Expect(clusterConditionMessage("cluster-1", v1beta1.ConditionSwitched)).To(And(
			ContainSubstring("remote profile (ExternalName localhost)"), ContainSubstring("istiodRemote.injectionURL")))
		Expect(clusterMetrics("cluster-1")).To(HaveKeyWithValue("cluster_switched", 1.0))
		// Somebody re-points Service istiod while the cluster is switched: the operator
		// does not fight them (a reconcile reports it; the Service is not watched, so
		// that is at the latest the next resync), and the removal leaves their change
		// alone, keeps istiod, and says so.
		svc := &corev1.Service{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istiod"}, svc)).To(Succeed())
		svc.Spec.Selector = map[string]string{"app": "istiod-canary"}
		Expect(rc.client.Update(ctx(), svc)).To(Succeed())
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { delete(mc.Spec.ExternalIstiodConfigurations, "cluster-1") })
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionReady) }).Should(Equal("False/" + controller.ReasonAddressChanged))
		Expect(clusterCondition("cluster-1", v1beta1.ConditionSwitched)).To(Equal("False/" + controller.ReasonAddressChanged))
		Expect(clusterConditionMessage("cluster-1", v1beta1.ConditionSwitched)).To(ContainSubstring("ExternalName localhost"))
		Consistently(rc.ownedNames, 2*time.Second).Should(ContainElement("Deployment/istio-system/istiod"))
		Expect(rc.address()).To(Equal("ClusterIP map[app:istiod-canary] slices=0"))
		// They point it at the mesh control plane again, as the remote profile had it.
		// The gateways restart, and istiod stays until their new pods run.
		rc.holdRollouts.Store(true)
		Expect(rc.client.Patch(ctx(), svc, client.RawPatch(types.MergePatchType,
			[]byte(`{"spec":{"type":"ExternalName","externalName":"localhost","selector":null}}`)))).To(Succeed())
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionReady) }).Should(Equal("False/" + controller.ReasonWaitingForGateways))
		Expect(clusterConditionMessage("cluster-1", v1beta1.ConditionReady)).To(ContainSubstring("istio-system/istio-ingressgateway"))
		Consistently(rc.ownedNames, 2*time.Second).Should(ContainElement("Deployment/istio-system/istiod"))
		rc.holdRollouts.Store(false)
		Eventually(rc.ownedNames).Should(BeEmpty())
		rc.expectOneInjector(meshIstiodURL("cluster-1"))
		Expect(rc.address()).To(Equal("ExternalName localhost"))
		// The ExternalName Service, given a ClusterIP while switched, is as it was.
		rc.expectAsBefore()
		Expect(rc.lead()).To(Equal(meshClusterID))
		restarts := rc.restarts()
		for _, gw := range gatewayNames {
			Expect(restarts[gw]).To(MatchRegexp(`^back-\d{8}T\d{6}Z`+generation("cluster-1", gw, 2)+`$`), gw)
		}
		Expect(eventReasons()).To(ContainElement(controller.ReasonSwitchedBack))
		Eventually(func() []v1beta1.ClusterStatus { return getMeshConfig().Status.Clusters }).Should(HaveLen(1))
		Expect(clusterMetrics("cluster-1")).To(BeEmpty(), "no series is left of a cluster that is no longer managed")
		Eventually(readyCondition).Should(Equal("True/Ready"))
		// The namespace was there before the operator came, so it stays.
		Expect(remotes["cluster-1"].client.Get(ctx(), types.NamespacedName{Name: ns}, &corev1.Namespace{})).To(Succeed())
		Expect(remotes["cluster-2"].ownedNames()).To(Equal(switchedIstiod))
	})

	It("gives cluster-2's istiod scoped access to cluster-1 with mutual access, and takes it back", func() {
		setMutualAccess(true)
		secret := &corev1.Secret{}
		key := types.NamespacedName{Namespace: ns, Name: "istio-remote-secret-cluster-1"}
		Eventually(func() error { return remotes["cluster-2"].client.Get(ctx(), key, secret) }).Should(Succeed())
		Expect(secret.Labels).To(HaveKeyWithValue("istio/multiCluster", "true"))
		reader := kubeconfigClient(secret.Data["cluster-1"])
		Expect(reader.List(ctx(), &corev1.ServiceList{})).To(Succeed(), "istiod reads services of cluster-1")
		Expect(reader.List(ctx(), &corev1.PodList{})).To(Succeed(), "istiod reads pods of cluster-1")
		err := reader.Create(ctx(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the reader writes nothing: %v", err)
		Eventually(readyCondition).Should(Equal("True/Ready"))

		setMutualAccess(false)
		Eventually(func() bool { return apierrors.IsNotFound(remotes["cluster-2"].client.Get(ctx(), key, secret)) }).Should(BeTrue())
		Eventually(func() error {
			return remotes["cluster-1"].client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "remote-istiod-reader-cluster-2"}, &corev1.ServiceAccount{})
		}).Should(Satisfy(apierrors.IsNotFound))
		Expect(apierrors.IsNotFound(remotes["cluster-1"].client.Get(ctx(), types.NamespacedName{Name: "remote-istiod-reader-cluster-2"}, &rbacv1.ClusterRoleBinding{}))).To(BeTrue())
	})

	It("includes the mesh cluster in mutual access once it is registered with a remote secret of its own", func() {
		// A mesh cluster that runs workloads is registered like a data-plane cluster;
		// the mesh istiod ignores a remote secret for its own cluster ID.
		u, err := meshEnv.AddUser(envtest.User{Name: "mesh-admin", Groups: []string{"system:masters"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		raw, err := u.KubeConfig()
		Expect(err).NotTo(HaveOccurred())
		rememberKubeconfig(raw)
		writeRemoteSecret("istio-remote-secret-"+meshClusterID, map[string][]byte{meshClusterID: raw})
		setMutualAccess(true)

		secret := &corev1.Secret{}
		key := types.NamespacedName{Namespace: ns, Name: "istio-remote-secret-" + meshClusterID}
		Eventually(func() error { return remotes["cluster-2"].client.Get(ctx(), key, secret) }).Should(Succeed())
		reader := kubeconfigClient(secret.Data[meshClusterID])
		Expect(reader.List(ctx(), &corev1.ServiceList{})).To(Succeed(), "istiod reads services of the mesh cluster")
		err = reader.Create(ctx(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "default"}})
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the reader writes nothing: %v", err)
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: "remote-istiod-reader-cluster-2"}, &rbacv1.ClusterRoleBinding{})).To(Succeed())

		setMutualAccess(false)
		Eventually(func() bool { return apierrors.IsNotFound(remotes["cluster-2"].client.Get(ctx(), key, secret)) }).Should(BeTrue())
		Eventually(func() error {
			return mesh.Get(ctx(), types.NamespacedName{Name: "remote-istiod-reader-cluster-2"}, &rbacv1.ClusterRoleBinding{})
		}).Should(Satisfy(apierrors.IsNotFound))
		Expect(mesh.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-" + meshClusterID, Namespace: ns}})).To(Succeed())
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("puts the cluster on its network for multi-network meshes, and takes the label back", func() {
		rc := remotes["cluster-2"]
		network := func() string {
			nsObj := &corev1.Namespace{}
			Expect(rc.client.Get(ctx(), types.NamespacedName{Name: ns}, nsObj)).To(Succeed())
			return nsObj.Labels["topology.istio.io/network"]
		}
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			e := mc.Spec.ExternalIstiodConfigurations["cluster-2"]
			e.Network = "network-2"
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = e
		})
		Eventually(network).Should(Equal("network-2"))
		// The label goes first; the ConfigMap follows in the same pass.
		Eventually(func() string {
			cm := &corev1.ConfigMap{}
			Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istio"}, cm)).To(Succeed())
			return cm.Data["meshNetworks"]
		}).Should(ContainSubstring("fromRegistry: cluster-2"))
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			e := mc.Spec.ExternalIstiodConfigurations["cluster-2"]
			e.Network = ""
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = e
		})
		Eventually(network).Should(BeEmpty())
	})

	It("reports a cluster ID no remote secret provides, while the other cluster converges", func() {
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Spec.ExternalIstiodConfigurations["cluster-9"] = entry(1)
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(2)
		})
		Eventually(func() string { return clusterCondition("cluster-9", v1beta1.ConditionConnected) }).
			Should(Equal("False/" + controller.ReasonRemoteSecretAbsent))
		Eventually(eventReasons).Should(ContainElement(controller.ReasonRemoteSecretAbsent))
		Eventually(func() int32 { return *remotes["cluster-2"].deployment().Spec.Replicas }).Should(BeEquivalentTo(2))
		remotes["cluster-2"].markAvailable()
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }).Should(Equal("True/Ready"))
		Eventually(readyCondition).Should(Equal("False/" + controller.ReasonClustersNotReady))
		// Waiting and stalled clusters both make Ready False; Stalled follows once
		// cluster-9's Ready says it needs a person.
		Eventually(func() string { return condition(getMeshConfig(), v1beta1.ConditionStalled) }).Should(HavePrefix("True"))
		Expect(condition(getMeshConfig(), v1beta1.ConditionReady)).To(ContainSubstring("cluster-9"))
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { delete(mc.Spec.ExternalIstiodConfigurations, "cluster-9") })
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("reports a kubeconfig that lacks the permissions it needs, without crashing", func() {
		limited := remotes["cluster-1"].kubeconfig("no-rights", "nobody")
		writeRemoteSecret("istio-remote-secret-limited", map[string][]byte{"cluster-limited": limited})
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-limited"] = entry(1) })
		Eventually(func() string { return clusterCondition("cluster-limited", v1beta1.ConditionConnected) }).
			Should(Equal("False/" + controller.ReasonForbidden))
		Eventually(func() string { return condition(getMeshConfig(), v1beta1.ConditionReady) }).Should(ContainSubstring("docs/remote-permissions.md"))
		// Removing the entry cannot clean a cluster the operator may not read; it says so
		// and retries. Once the cluster leaves the mesh, it is forgotten.
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { delete(mc.Spec.ExternalIstiodConfigurations, "cluster-limited") })
		Eventually(func() string { return clusterCondition("cluster-limited", v1beta1.ConditionReady) }).Should(Equal("False/" + controller.ReasonRemoving))
		Expect(clusterMetrics("cluster-limited")).To(HaveKeyWithValue("cluster_connected", 0.0))
		Expect(mesh.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-limited", Namespace: ns}})).To(Succeed())
		Eventually(func() []v1beta1.ClusterStatus { return getMeshConfig().Status.Clusters }).Should(HaveLen(1))
		Expect(clusterMetrics("cluster-limited")).To(BeEmpty())
	})

	It("reports a remote secret whose kubeconfig cannot be parsed, without crashing", func() {
		// An ID of its own: other containers start a cluster-3 of their own.
		const broken = "cluster-broken"
		writeRemoteSecret("istio-remote-secret-broken", map[string][]byte{broken: []byte("{not a kubeconfig")})
		DeferCleanup(func() {
			Expect(mesh.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-broken", Namespace: ns}})).To(Succeed())
		})
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations[broken] = entry(1) })
		Eventually(func() string { return clusterCondition(broken, v1beta1.ConditionConnected) }).
			Should(Equal("False/" + controller.ReasonInvalidKubeconfig))
		Expect(condition(getMeshConfig(), v1beta1.ConditionReady)).NotTo(ContainSubstring("not a kubeconfig"))
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { delete(mc.Spec.ExternalIstiodConfigurations, broken) })
		Eventually(func() []v1beta1.ClusterStatus { return getMeshConfig().Status.Clusters }).Should(HaveLen(1))
	})

	It("keeps working when a remote secret's kubeconfig is rotated", func() {
		writeRemoteSecret("istio-remote-secret-cluster-2", map[string][]byte{"cluster-2": remotes["cluster-2"].kubeconfig("operator-rotated", remoteOperatorGroup)})
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(4) })
		Eventually(func() int32 { return *remotes["cluster-2"].deployment().Spec.Replicas }).Should(BeEquivalentTo(4))
		remotes["cluster-2"].markAvailable()
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("reports an unreachable cluster while the other one converges", func() {
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-1"] = entry(1) })
		Eventually(remotes["cluster-1"].ownedNames).Should(Equal(installedOneReplica))
		Expect(remotes["cluster-1"].link.SetMode(farlink.Down)).To(Succeed())

		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Spec.ExternalIstiodConfigurations["cluster-1"] = entry(2)
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(2)
		})
		Eventually(func() int32 { return *remotes["cluster-2"].deployment().Spec.Replicas }).Should(BeEquivalentTo(2))
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionConnected) }).
			Should(Equal("False/" + controller.ReasonUnreachable))
	})

	It("cleans every reachable cluster on deletion, and the unreachable one once its link is back", func() {
		mc := getMeshConfig()
		Expect(mesh.Delete(ctx(), mc)).To(Succeed())
		Eventually(remotes["cluster-2"].ownedNames).Should(BeEmpty())
		Eventually(readyCondition).Should(Equal("False/" + controller.ReasonDeleting))
		// Switched back, cluster-2 is as it was before the operator came, object for
		// object, apart from the gateways' restart annotation.
		rc := remotes["cluster-2"]
		rc.expectOneInjector(meshInjector(rc))
		Expect(rc.address()).To(Equal("ClusterIP map[] slices=1"))
		rc.expectAsBefore()
		Expect(getMeshConfig().Finalizers).To(ContainElement(controller.Finalizer))

		// cluster-1 is cleaned as soon as its link is back.
		Consistently(func() []string { return getMeshConfig().Finalizers }, 3*time.Second).Should(ContainElement(controller.Finalizer))
		Expect(remotes["cluster-1"].link.SetMode(farlink.Up)).To(Succeed())
		Eventually(func() bool {
			return apierrors.IsNotFound(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{}))
		}, 3*time.Minute).Should(BeTrue())
		Expect(remotes["cluster-1"].ownedNames()).To(BeEmpty())
		remotes["cluster-1"].expectAsBefore()
		Expect(clusterMetrics("cluster-1")).To(BeEmpty())
		Expect(clusterMetrics("cluster-2")).To(BeEmpty())
	})
})

// condition returns "Status: Message" of one of the ASMMeshConfig's conditions.
func condition(mc *v1beta1.ASMMeshConfig, typ string) string {
	for _, c := range mc.Status.Conditions {
		if c.Type == typ {
			return string(c.Status) + ": " + c.Message
		}
	}
	return ""
}
