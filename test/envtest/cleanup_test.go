package envtest

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

var _ = Describe("the removal next to others' objects", Ordered, func() {
	const id = "cluster-shared"
	var rc *remoteCluster
	vsCRD := "virtualservices.networking.istio.io"
	crdGone := func(name string) func() bool {
		return func() bool {
			return apierrors.IsNotFound(rc.client.Get(ctx(), types.NamespacedName{Name: name}, &apiextensionsv1.CustomResourceDefinition{}))
		}
	}
	namespaceDeleted := func() bool {
		n := &corev1.Namespace{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Name: ns}, n)).To(Succeed())
		return n.DeletionTimestamp != nil
	}

	BeforeAll(func() {
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		var stop func()
		rc, stop = startDataPlane(id)
		DeferCleanup(func() {
			removeMeshConfig()
			Expect(mesh.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-" + id, Namespace: ns}})).To(Succeed())
			stop()
		})
		// The control plane namespace is the operator's, as when it created it in a
		// cluster that lacked it; the remote profile's objects in it are others'.
		n := &corev1.Namespace{}
		Expect(rc.client.Get(ctx(), types.NamespacedName{Name: ns}, n)).To(Succeed())
		n.Labels = map[string]string{render.ManagedByLabel: render.ManagedByValue, render.ClusterIDLabel: id}
		Expect(rc.client.Update(ctx(), n)).To(Succeed())
	})

	It("keeps an Istio CRD while others' resources of its kind exist, and the namespace it created while others' objects are in it", func() {
		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{id: entry(1)}}})).To(Succeed())
		Eventually(func() error {
			return rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istiod"}, &appsv1.Deployment{})
		}).Should(Succeed())
		rc.markAvailable()
		Eventually(func() string { return clusterCondition(id, v1beta1.ConditionSwitched) }).Should(Equal("True/" + controller.ReasonSwitched))
		// Somebody writes a VirtualService of their own in the data-plane cluster.
		theirs := scaleVirtualService("theirs")
		theirs.SetLabels(nil)
		theirs.SetNamespace("default")
		Expect(rc.client.Create(ctx(), theirs)).To(Succeed())

		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { delete(mc.Spec.ExternalIstiodConfigurations, id) })
		Eventually(func() string { return clusterCondition(id, v1beta1.ConditionReady) }).Should(Equal("False/" + controller.ReasonForeignObjects))
		Expect(clusterConditionMessage(id, v1beta1.ConditionReady)).To(And(
			ContainSubstring("CustomResourceDefinition "+vsCRD+" (VirtualService the operator did not create: default/theirs)"),
			ContainSubstring("namespace "+ns+" (objects the operator did not create: ")))
		Expect(eventReasons()).To(ContainElement(controller.ReasonForeignObjects))
		// Everything else is gone: istiod, the switch, the other CRDs.
		Expect(rc.ownedNames()).To(Equal([]string{"CustomResourceDefinition/" + vsCRD}))
		Eventually(crdGone("destinationrules.networking.istio.io")).Should(BeTrue())
		Expect(crdGone(vsCRD)()).To(BeFalse())
		Expect(namespaceDeleted()).To(BeFalse())
		Expect(clusterStatusOf(id).AppliedHash).To(BeEmpty())
		// The operator's part is done: the entry does not hold the ASMMeshConfig back.
		Eventually(readyCondition).Should(Equal("True/Ready"))

		// Their VirtualService goes: so does the CRD; the namespace still holds others' objects.
		Expect(rc.client.Delete(ctx(), theirs)).To(Succeed())
		Eventually(crdGone(vsCRD), 3*time.Minute).Should(BeTrue())
		Eventually(func() string {
			if c := clusterCondition(id, v1beta1.ConditionReady); c != "False/"+controller.ReasonForeignObjects {
				return c
			}
			return clusterConditionMessage(id, v1beta1.ConditionReady)
		}).Should(And(ContainSubstring("namespace "+ns+" ("), Not(ContainSubstring(vsCRD))))
		Expect(namespaceDeleted()).To(BeFalse())

		// Deleting the ASMMeshConfig is not held up by them; the namespace stays.
		removeMeshConfig()
		Expect(namespaceDeleted()).To(BeFalse())
	})
})
