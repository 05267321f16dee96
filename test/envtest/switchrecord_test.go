package envtest

import (
	"encoding/json"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/switching"
)

// meshInjectors are the mesh control plane's injectors of a cluster, by name: their
// uid and webhooks, as JSON, to compare with what they were before the switch.
func (rc *remoteCluster) meshInjectors() map[string]string {
	list := &admissionv1.MutatingWebhookConfigurationList{}
	Expect(rc.client.List(ctx(), list)).To(Succeed())
	out := map[string]string{}
	for _, mwc := range list.Items {
		if mwc.Labels[render.ManagedByLabel] == render.ManagedByValue || !switching.IsIstioInjector(&mwc) {
			continue
		}
		raw, err := json.Marshal(mwc.Webhooks)
		Expect(err).NotTo(HaveOccurred())
		out[mwc.Name] = string(mwc.UID) + " " + string(raw)
	}
	return out
}

// switchRecordData is the switch record in cluster-2, nil when it has none.
func switchRecordData(rc *remoteCluster) map[string]string {
	cm := configMapIn(rc.client, switching.StateName)
	if cm == nil {
		return nil
	}
	return cm.Data
}

// recordCopy is the mesh cluster's copy of cluster-2's switch record, nil when absent.
func recordCopy() *corev1.ConfigMap { return configMapIn(mesh, switching.CopyName("cluster-2")) }

// recordCopyData is the data of recordCopy, nil when there is none.
func recordCopyData() map[string]string {
	if cm := recordCopy(); cm != nil {
		return cm.Data
	}
	return nil
}

func setLink(rc *remoteCluster, m farlink.Mode) { Expect(rc.link.SetMode(m)).To(Succeed()) }

// resync makes the operator look at every cluster again.
func resync(why string) {
	updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
		if mc.Annotations == nil {
			mc.Annotations = map[string]string{}
		}
		mc.Annotations["example.com/resync"] = why + " " + time.Now().String()
	})
}

// abandon sets, or with no IDs removes, the annotation that abandons clusters.
func abandon(ids string) {
	updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
		if mc.Annotations == nil {
			mc.Annotations = map[string]string{}
		}
		mc.Annotations[v1beta1.AbandonClustersAnnotation] = ids
		if ids == "" {
			delete(mc.Annotations, v1beta1.AbandonClustersAnnotation)
		}
	})
}

var _ = Describe("the switch record and the removal of far clusters", Ordered, func() {
	var (
		rc *remoteCluster
		// before are cluster-2's mesh injectors before any switch.
		before map[string]string
	)

	// switchCluster2 adds cluster-2's entry and waits until it is switched.
	switchCluster2 := func() {
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			if mc.Spec.ExternalIstiodConfigurations == nil {
				mc.Spec.ExternalIstiodConfigurations = map[string]v1beta1.ExternalIstiodConfiguration{}
			}
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(1)
		})
		Eventually(rc.ownedNames).Should(ContainElement("Deployment/istio-system/istiod"))
		rc.markAvailable()
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionSwitched) }).Should(Equal("True/" + controller.ReasonSwitched))
		// Settled: a reconcile still under way when the link is cut would report from
		// what it read before the switch.
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }).Should(Equal("True/" + controller.ReasonReady))
		Consistently(func() string { return cluster2Status().AppliedHash }, time.Second).ShouldNot(BeEmpty())
	}
	removeCluster2 := func() {
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { delete(mc.Spec.ExternalIstiodConfigurations, "cluster-2") })
	}
	statusEntries := func() []v1beta1.ClusterStatus { return getMeshConfig().Status.Clusters }

	BeforeAll(func() {
		rc = remotes["cluster-2"]
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		before = rc.meshInjectors()
		Expect(before).NotTo(BeEmpty())
		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName}})).To(Succeed())
		DeferCleanup(func() {
			setLink(rc, farlink.Up)
			secret := types.NamespacedName{Namespace: ns, Name: "istio-remote-secret-cluster-2"}
			if apierrors.IsNotFound(mesh.Get(ctx(), secret, &corev1.Secret{})) {
				writeRemoteSecret(secret.Name, map[string][]byte{"cluster-2": rc.kubeconfig("operator-cleanup", remoteOperatorGroup)})
			}
			abandon("")
			removeCluster2()
			Eventually(statusEntries, 3*time.Minute).Should(BeEmpty())
			// Other containers count cluster-2's gateway restarts from zero.
			Eventually(func() map[string]float64 { return clusterMetrics("cluster-2") }).Should(BeEmpty())
			Expect(mesh.Delete(ctx(), getMeshConfig())).To(Succeed())
			Eventually(func() bool {
				return apierrors.IsNotFound(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{}))
			}).Should(BeTrue())
			Eventually(rc.ownedNames).Should(BeEmpty())
			Expect(recordCopy()).To(BeNil())
		})
	})

	It("restores a lost switch record from the mesh cluster's copy, and records nothing when the copy is lost too", func() {
		switchCluster2()
		record := switchRecordData(rc)
		Expect(record).NotTo(BeNil())
		Eventually(recordCopyData).Should(Equal(record))
		Expect(recordCopy().Labels).To(HaveKeyWithValue(render.ClusterIDLabel, "cluster-2"))

		By("restoring the record when only the data-plane cluster lost it")
		Expect(rc.client.Delete(ctx(), configMapIn(rc.client, switching.StateName))).To(Succeed())
		Eventually(func() map[string]string { return switchRecordData(rc) }).Should(Equal(record))
		Eventually(eventReasons).Should(ContainElement(controller.ReasonSwitchRecordRestored))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionSwitched)).To(Equal("True/" + controller.ReasonSwitched))

		By("refusing to record the switched objects when both are lost")
		saved := recordCopy().DeepCopy()
		Eventually(func() string {
			// A reconcile between the two deletions restores one from the other: delete
			// both until the operator says it has neither.
			for _, c := range []client.Client{mesh, rc.client} {
				name := switching.StateName
				if c == mesh {
					name = switching.CopyName("cluster-2")
				}
				Expect(client.IgnoreNotFound(c.Delete(ctx(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}))).To(Succeed())
			}
			return clusterCondition("cluster-2", v1beta1.ConditionSwitched)
		}).Should(Equal("False/" + controller.ReasonSwitchRecordLost))
		Expect(clusterConditionMessage("cluster-2", v1beta1.ConditionSwitched)).To(And(
			ContainSubstring("selects the local istiod's pods"), ContainSubstring("names the cluster itself"),
			ContainSubstring("gateways were restarted for a switch")))
		resync("record lost")
		Consistently(func() map[string]string { return switchRecordData(rc) }, 3*time.Second).Should(BeNil())
		Expect(recordCopy()).To(BeNil())

		By("going on once the copy is back")
		Expect(mesh.Create(ctx(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: saved.Name, Labels: saved.Labels},
			Data: saved.Data})).To(Succeed())
		resync("copy restored")
		Eventually(func() map[string]string { return switchRecordData(rc) }).Should(Equal(record))
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionSwitched) }).Should(Equal("True/" + controller.ReasonSwitched))
	})

	It("waits with the removal of a cluster it cannot reach, and completes it once the link is back", func() {
		Expect(rc.address()).To(Equal(localAddress))
		setLink(rc, farlink.Down)
		DeferCleanup(setLink, rc, farlink.Up)
		removeCluster2()
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }).Should(Equal("False/" + controller.ReasonUnreachable))
		Expect(clusterConditionMessage("cluster-2", v1beta1.ConditionReady)).To(And(
			ContainSubstring("removal of istiod from cluster cluster-2 waits"), ContainSubstring(v1beta1.AbandonClustersAnnotation)))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionConnected)).To(Equal("False/" + controller.ReasonUnreachable))
		Consistently(statusEntries, 5*time.Second).Should(HaveLen(1), "the cluster is not forgotten")
		Expect(rc.ownedNames()).To(ContainElement("Deployment/istio-system/istiod"))
		Expect(recordCopy()).NotTo(BeNil())

		setLink(rc, farlink.Up)
		Eventually(rc.ownedNames, 3*time.Minute).Should(BeEmpty())
		Eventually(statusEntries).Should(BeEmpty())
		// The record was lost and restored from the copy while switched: the switch-back
		// still gives the injectors back exactly as they were before the switch.
		Expect(rc.meshInjectors()).To(Equal(before))
		Expect(rc.address()).To(Equal("ClusterIP map[] slices=1"))
		Expect(recordCopy()).To(BeNil(), "the copy goes with a completed switch-back")
		rc.expectAsBefore()
	})

	It("stops cleaning up a cluster it is told to abandon, says what it left there and when its CA expires, and resumes without the annotation", func() {
		switchCluster2()
		var expires *metav1.Time
		Eventually(func() *metav1.Time { expires = cluster2Status().IntermediateCAExpiresAt; return expires }).ShouldNot(BeNil())
		Expect(expires.Time).To(BeTemporally("~", time.Now().Add(90*24*time.Hour), time.Hour))
		setLink(rc, farlink.Down)
		DeferCleanup(setLink, rc, farlink.Up)
		removeCluster2()
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }).Should(Equal("False/" + controller.ReasonUnreachable))
		abandon("cluster-9, cluster-2")
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }).Should(Equal("False/" + controller.ReasonAbandoned))
		Expect(clusterConditionMessage("cluster-2", v1beta1.ConditionReady)).To(And(
			ContainSubstring("left behind there: istiod"),
			ContainSubstring("Service istio-system/istiod leads to that istiod"),
			ContainSubstring("webhooks istio-sidecar-injector"),
			ContainSubstring("expires at "+expires.UTC().Format(time.RFC3339))))
		Eventually(eventReasons).Should(ContainElement(controller.ReasonAbandoned))
		// A person gave it up: the mesh does not wait for it.
		Eventually(readyCondition).Should(Equal("True/Ready"))

		By("removing nothing there, even once the cluster answers")
		setLink(rc, farlink.Up)
		resync("abandoned and reachable")
		Consistently(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }, 3*time.Second).
			Should(Equal("False/" + controller.ReasonAbandoned))
		Expect(rc.ownedNames()).To(ContainElement("Deployment/istio-system/istiod"))
		Expect(rc.address()).To(Equal(localAddress))

		By("resuming the removal once the annotation no longer names it")
		abandon("")
		Eventually(rc.ownedNames, 3*time.Minute).Should(BeEmpty())
		Eventually(statusEntries).Should(BeEmpty())
		Expect(rc.meshInjectors()).To(Equal(before))
		rc.expectAsBefore()
	})

	It("drops an abandoned cluster once its remote secret leaves the mesh", func() {
		switchCluster2()
		setLink(rc, farlink.Down)
		DeferCleanup(setLink, rc, farlink.Up)
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			delete(mc.Spec.ExternalIstiodConfigurations, "cluster-2")
			mc.Annotations = map[string]string{v1beta1.AbandonClustersAnnotation: "cluster-2"}
		})
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }).Should(Equal("False/" + controller.ReasonAbandoned))
		secret := &corev1.Secret{}
		Expect(mesh.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istio-remote-secret-cluster-2"}, secret)).To(Succeed())
		Expect(mesh.Delete(ctx(), secret)).To(Succeed())
		Eventually(statusEntries).Should(BeEmpty())
		Eventually(eventReasons).Should(ContainElement(controller.ReasonLeftBehind))
		Expect(recordCopy()).To(BeNil())
		Expect(rc.ownedNames()).To(ContainElement("Deployment/istio-system/istiod"), "what was abandoned stays")

		By("cleaning it up once the cluster is back in the mesh and removed again")
		setLink(rc, farlink.Up)
		writeRemoteSecret("istio-remote-secret-cluster-2", map[string][]byte{"cluster-2": rc.kubeconfig("operator-returned", remoteOperatorGroup)})
		abandon("")
		// Its own record tells the operator the cluster is switched.
		switchCluster2()
		removeCluster2()
		Eventually(rc.ownedNames, 3*time.Minute).Should(BeEmpty())
		Eventually(statusEntries).Should(BeEmpty())
		rc.expectAsBefore()
	})

	It("reports an injector or validator its owner re-created while the cluster is switched, and leaves it as they made it", func() {
		validator := &admissionv1.ValidatingWebhookConfiguration{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Name: "istiod-default-validator"}, validator)).To(Succeed())
		originalValidator := validator.Webhooks
		switchCluster2()
		Expect(rc.meshInjectors()).NotTo(Equal(before))
		// The owner re-installs the injector as the remote profile has it.
		live := &admissionv1.MutatingWebhookConfiguration{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Name: "istio-sidecar-injector"}, live)).To(Succeed())
		var original []admissionv1.MutatingWebhook
		_, webhooks, _ := strings.Cut(before["istio-sidecar-injector"], " ")
		Expect(json.Unmarshal([]byte(webhooks), &original)).To(Succeed())
		recreated := &admissionv1.MutatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: live.Name, Labels: live.Labels,
			Annotations: live.Annotations}, Webhooks: original}
		By("first a validator re-created by its owner: named, and the cluster stays switched")
		Expect(rc.client.Get(ctx(), types.NamespacedName{Name: validator.Name}, validator)).To(Succeed())
		recreatedValidator := &admissionv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: validator.Name,
			Labels: validator.Labels, Annotations: validator.Annotations}, Webhooks: originalValidator}
		Expect(rc.client.Delete(ctx(), validator)).To(Succeed())
		Expect(rc.client.Create(ctx(), recreatedValidator)).To(Succeed())
		resync("validator re-created")
		Eventually(func() string { return clusterConditionMessage("cluster-2", v1beta1.ConditionSwitched) }).
			Should(ContainSubstring("validator istiod-default-validator was re-created by its owner"))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionSwitched)).To(Equal("True/" + controller.ReasonSwitched))
		Eventually(eventReasons).Should(ContainElement(controller.ReasonValidatorReplaced))

		Expect(rc.client.Delete(ctx(), live)).To(Succeed())
		Expect(rc.client.Create(ctx(), recreated)).To(Succeed())
		resync("injector re-created")
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionSwitched) }).Should(Equal("False/" + controller.ReasonInjectorReplaced))
		Expect(clusterConditionMessage("cluster-2", v1beta1.ConditionSwitched)).To(ContainSubstring("injector istio-sidecar-injector was re-created by its owner"))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionReady)).To(Equal("False/" + controller.ReasonInjectorReplaced))
		Eventually(eventReasons).Should(ContainElement(controller.ReasonInjectorReplaced))
		rc.expectOneInjector(meshInjector(rc))

		removeCluster2()
		Eventually(rc.ownedNames, 3*time.Minute).Should(BeEmpty())
		Eventually(statusEntries).Should(BeEmpty())
		// Left as its owner made it; the rest of the cluster is as before.
		key := "MutatingWebhookConfiguration//istio-sidecar-injector"
		Expect(rc.client.Get(ctx(), types.NamespacedName{Name: recreated.Name}, live)).To(Succeed())
		Expect(live.UID).To(Equal(recreated.UID))
		Expect(live.Webhooks).To(Equal(recreated.Webhooks))
		rc.initial[key] = rc.inventory()[key] // the owner's injector is the cluster's from now on
		key = "ValidatingWebhookConfiguration//istiod-default-validator"
		rc.initial[key] = rc.inventory()[key] // so is the validator
		Expect(rc.client.Get(ctx(), types.NamespacedName{Name: validator.Name}, validator)).To(Succeed())
		Expect(validator.UID).To(Equal(recreatedValidator.UID))
		Expect(validator.Webhooks).To(Equal(recreatedValidator.Webhooks))
		rc.expectAsBefore()
	})
})
