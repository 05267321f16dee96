package envtest

import (
	"reflect"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
)

// The far link: clusters that are down when the operator starts, that hang, and that
// come back, each behind its simulated link.
var _ = Describe("far links", Ordered, func() {
	BeforeAll(func() {
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		DeferCleanup(func() {
			for _, rc := range remotes {
				Expect(rc.link.SetMode(farlink.Up)).To(Succeed())
			}
			mc := &v1beta1.ASMMeshConfig{}
			if err := mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, mc); err == nil {
				Expect(mesh.Delete(ctx(), mc)).To(Succeed())
			}
			Eventually(func() bool {
				return apierrors.IsNotFound(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{}))
			}).Should(BeTrue())
			for _, rc := range remotes {
				Eventually(rc.ownedNames).Should(BeEmpty())
				rc.expectAsBefore()
			}
		})
	})

	It("connects a cluster that was down when the operator started once its link is back, and says it was unreachable", func() {
		c1 := remotes["cluster-1"]
		Expect(c1.link.SetMode(farlink.Down)).To(Succeed())
		// An operator that starts (or takes over) during the outage.
		stopMgr()
		Eventually(mgrDone).Should(BeClosed())
		startManager()
		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
				"cluster-1": entry(1), "cluster-2": entry(1)}}})).To(Succeed())

		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionConnected) }).
			Should(Equal("False/" + controller.ReasonUnreachable))
		msg := clusterConditionMessage("cluster-1", v1beta1.ConditionConnected)
		Expect(msg).To(ContainSubstring("refused the connection"))
		Expect(msg).NotTo(ContainSubstring("kubeconfig"), "a link that is down is not a bad kubeconfig")

		Expect(c1.link.SetMode(farlink.Up)).To(Succeed())
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionApplied) }, 2*time.Minute).
			Should(Equal("True/Applied"))
		Expect(clusterCondition("cluster-1", v1beta1.ConditionConnected)).To(Equal("True/Connected"))
		Expect(c1.ownedNames()).To(ContainElement("Deployment/istio-system/istiod"))
	})

	It("keeps other clusters moving while one link hangs, reports the hung one, and reaches it again once the link is back", func() {
		c1, c2 := remotes["cluster-1"], remotes["cluster-2"]
		Expect(c1.link.SetMode(farlink.Hung)).To(Succeed())
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			mc.Spec.ExternalIstiodConfigurations["cluster-1"] = entry(2)
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = entry(2)
		})
		Eventually(func() int32 { return *c2.deployment().Spec.Replicas }, 30*time.Second).Should(BeEquivalentTo(2))
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionConnected) }, 90*time.Second).
			Should(Equal("False/" + controller.ReasonUnreachable))
		Expect(clusterConditionMessage("cluster-1", v1beta1.ConditionConnected)).To(ContainSubstring("did not answer"))

		Expect(c1.link.SetMode(farlink.Up)).To(Succeed())
		Eventually(func() int32 { return *c1.deployment().Spec.Replicas }, 2*time.Minute).Should(BeEquivalentTo(2))
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionConnected) }).Should(Equal("True/Connected"))
	})

	It("opens no watch stream for a minute in steady state", func() {
		// Before, every request had a 15s client timeout, which also ended every watch
		// stream: each informer re-opened its watch four times a minute.
		watches := func() map[string]float64 {
			return map[string]float64{
				"cluster-1": clusterMetrics("cluster-1")["remote_requests_total{verb=watch}"],
				"cluster-2": clusterMetrics("cluster-2")["remote_requests_total{verb=watch}"],
			}
		}
		// Steady: the informers of both clusters are open and nothing is changing.
		Eventually(watches, time.Minute, 5*time.Second).Should(And(
			HaveKeyWithValue("cluster-1", BeNumerically(">", 0)), HaveKeyWithValue("cluster-2", BeNumerically(">", 0))))
		var before map[string]float64
		Eventually(func() bool {
			now := watches()
			stable := reflect.DeepEqual(now, before)
			before = now
			return stable
		}, 2*time.Minute, 10*time.Second).Should(BeTrue(), "watch streams keep being opened")
		Consistently(watches, time.Minute, 5*time.Second).Should(Equal(before))
	})

	It("reports credentials the cluster refuses as Unauthorized, not as missing permissions", func() {
		kc, err := clientcmd.Load(remotes["cluster-1"].kubeconfig("rotated-away", remoteOperatorGroup))
		Expect(err).NotTo(HaveOccurred())
		for _, auth := range kc.AuthInfos {
			auth.ClientCertificateData, auth.ClientKeyData = nil, nil
			auth.Token = "a-token-the-cluster-no-longer-accepts"
		}
		rememberSecret([]byte("a-token-the-cluster-no-longer-accepts"))
		raw, err := clientcmd.Write(*kc)
		Expect(err).NotTo(HaveOccurred())
		writeRemoteSecret("istio-remote-secret-expired", map[string][]byte{"cluster-expired": raw})
		DeferCleanup(func() {
			updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { delete(mc.Spec.ExternalIstiodConfigurations, "cluster-expired") })
			Expect(mesh.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-expired", Namespace: ns}})).To(Succeed())
			Eventually(func() []v1beta1.ClusterStatus { return getMeshConfig().Status.Clusters }).Should(HaveLen(2))
		})
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations["cluster-expired"] = entry(1) })
		Eventually(func() string { return clusterCondition("cluster-expired", v1beta1.ConditionConnected) }).
			Should(Equal("False/" + controller.ReasonUnauthorized))
		msg := clusterConditionMessage("cluster-expired", v1beta1.ConditionConnected)
		Expect(msg).To(ContainSubstring("401"))
		Expect(msg).NotTo(ContainSubstring("remote-permissions"))
	})
})
