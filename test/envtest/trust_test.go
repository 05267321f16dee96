package envtest

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/ca/catest"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
)

var _ = Describe("a mesh CA near its end", Ordered, func() {
	It("issues the intermediate once, says when the mesh CA expires, and does not roll istiod on every pass", func() {
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		rc := remotes["cluster-2"]
		setMeshCA := func(b map[string][]byte) {
			s := &corev1.Secret{}
			Expect(mesh.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, s)).To(Succeed())
			s.Data = b
			Expect(mesh.Update(ctx(), s)).To(Succeed())
		}
		lasting := meshCA
		DeferCleanup(func() {
			meshCA = lasting
			setMeshCA(meshCA)
			removeMeshConfig()
			Eventually(rc.ownedNames).Should(BeEmpty())
		})
		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{"cluster-2": entry(1)}}})).To(Succeed())
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))

		// The install's own aftermath (CRDs becoming established, istiod's Deployment
		// created) wakes the cluster for a while; what follows must be the rotation's doing.
		Eventually(func() float64 {
			count := reconciles()
			time.Sleep(3 * time.Second)
			return reconciles() - count
		}, 2*time.Minute).Should(BeZero())

		// Ten days left, and intermediates are renewed 30 days before they end.
		meshCA = catest.MeshCACerts(10 * 24 * time.Hour)
		rememberSecret(meshCA["ca-key.pem"])
		setMeshCA(meshCA)
		// Nothing else changes: the rotation alone wakes the cluster, long before its
		// 5-minute resync.
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionMeshTrust) }).
			Should(Equal("False/" + controller.ReasonMeshCAExpiring))
		Expect(clusterConditionMessage("cluster-2", v1beta1.ConditionMeshTrust)).To(ContainSubstring("expires on " + time.Now().Add(10*24*time.Hour).UTC().Format("2006-01-02")))
		cacerts := &corev1.Secret{}
		Eventually(func() error {
			Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, cacerts)).To(Succeed())
			return verifiesAgainstMeshRoot(cacerts.Data)
		}).Should(Succeed(), "the intermediate of the new mesh CA is issued")
		Expect(clusterCondition("cluster-2", v1beta1.ConditionApplied)).To(Equal("True/Applied"))

		// Passes go on; none issues the intermediate again or rolls istiod.
		issued, generation := cacerts.ResourceVersion, rc.deployment().Generation
		for _, pass := range []string{"one", "two", "three"} {
			count := reconciles()
			updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Annotations = map[string]string{"example.com/pass": pass} })
			Eventually(reconciles).Should(BeNumerically(">", count))
		}
		Consistently(func() string {
			Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, cacerts)).To(Succeed())
			return cacerts.ResourceVersion
		}, 3*time.Second).Should(Equal(issued), "the intermediate is issued again")
		Expect(rc.deployment().Generation).To(Equal(generation), "istiod is rolled again")
	})
})
