package envtest

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"reflect"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/access"
	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/farlink"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
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
			removeMeshConfig()
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
		restartWithBothClusters()

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
				"cluster-1": requestMetrics("cluster-1")["remote_requests_total{verb=watch}"],
				"cluster-2": requestMetrics("cluster-2")["remote_requests_total{verb=watch}"],
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

	It("keeps the other clusters ready and their peers' secrets while one peer of mutual access hangs", func() {
		c1, c2 := remotes["cluster-1"], remotes["cluster-2"]
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			for _, id := range []string{"cluster-1", "cluster-2"} {
				e := mc.Spec.ExternalIstiodConfigurations[id]
				e.MutualAccess = true
				mc.Spec.ExternalIstiodConfigurations[id] = e
			}
		})
		key := types.NamespacedName{Namespace: ns, Name: "istio-remote-secret-cluster-1"}
		held := &corev1.Secret{}
		Eventually(func() error { return c2.client.Get(ctx(), key, held) }).Should(Succeed())
		c1.markAvailable()
		c2.markAvailable()
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }).Should(Equal("True/Ready"))
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionMutualAccess) }).Should(Equal("True/" + controller.ReasonGranted))

		Expect(c1.link.SetMode(farlink.Hung)).To(Succeed())
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			e := mc.Spec.ExternalIstiodConfigurations["cluster-2"]
			e.Replicas = ptrTo(int32(1))
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = e
		})
		Eventually(func() int32 { return *c2.deployment().Spec.Replicas }, 30*time.Second).Should(BeEquivalentTo(1))
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionConnected) }, 90*time.Second).
			Should(Equal("False/" + controller.ReasonUnreachable))
		// The next pass of cluster-2 does not wait for the peer that is known to be down.
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) {
			e := mc.Spec.ExternalIstiodConfigurations["cluster-2"]
			e.Replicas = ptrTo(int32(2))
			mc.Spec.ExternalIstiodConfigurations["cluster-2"] = e
		})
		Eventually(func() int32 { return *c2.deployment().Spec.Replicas }, 30*time.Second).Should(BeEquivalentTo(2))
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionMutualAccess) }).
			Should(Equal("False/" + controller.ReasonPeerUnreachable))
		Expect(clusterConditionMessage("cluster-2", v1beta1.ConditionMutualAccess)).To(ContainSubstring("cluster-1"))
		c2.markAvailable()
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionReady) }).Should(Equal("True/Ready"))
		Expect(clusterCondition("cluster-2", v1beta1.ConditionApplied)).To(Equal("True/Applied"))
		kept := &corev1.Secret{}
		Expect(c2.client.Get(ctx(), key, kept)).To(Succeed())
		Expect(kept.Data).To(Equal(held.Data), "the secret cluster-2 holds for the hung peer is kept as it was")

		Expect(c1.link.SetMode(farlink.Up)).To(Succeed())
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionMutualAccess) }, 2*time.Minute).
			Should(Equal("True/" + controller.ReasonGranted))
	})

	It("renews the intermediate CA and the reader tokens while istiod cannot be rendered", func() {
		for _, name := range []string{"istio", "istio-sidecar-injector"} {
			if configMapIn(mesh, name) != nil {
				Skip("the mesh cluster has ConfigMap " + name + ": every version can be rendered")
			}
		}
		c2 := remotes["cluster-2"]
		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.Version = fmt.Sprintf("1.%d.3", istiochart.Minor()-3) })
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("False/" + controller.ReasonNoTemplateSource))
		DeferCleanup(func() {
			updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.Version = "" })
			Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))
		})

		// The intermediate in cluster-2 is in its renewal window: ten days left.
		issuer, err := ca.NewIssuer(ca.Bundle(meshCA))
		Expect(err).NotTo(HaveOccurred())
		expiring, err := issuer.Issue("cluster-2", 10*24*time.Hour, time.Now())
		Expect(err).NotTo(HaveOccurred())
		rememberSecret(expiring[ca.CAKey])
		cacerts := &corev1.Secret{}
		Expect(c2.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, cacerts)).To(Succeed())
		cacerts.Data = expiring
		Expect(c2.client.Update(ctx(), cacerts)).To(Succeed())
		// The token cluster-2 holds for cluster-1 is past half its lifetime.
		held := &corev1.Secret{}
		key := types.NamespacedName{Namespace: ns, Name: "istio-remote-secret-cluster-1"}
		Expect(c2.client.Get(ctx(), key, held)).To(Succeed())
		old := held.Data["cluster-1"]
		held.Annotations[access.IssuedAtAnnotation] = time.Now().Add(-13 * time.Hour).UTC().Format(time.RFC3339)
		Expect(c2.client.Update(ctx(), held)).To(Succeed())

		Eventually(func() time.Time {
			Expect(c2.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, cacerts)).To(Succeed())
			return notAfter(cacerts.Data[ca.CACert])
		}).Should(BeTemporally(">", time.Now().Add(60*24*time.Hour)), "the intermediate is renewed")
		Expect(verifiesAgainstMeshRoot(cacerts.Data)).To(Succeed())
		Eventually(func() []byte {
			Expect(c2.client.Get(ctx(), key, held)).To(Succeed())
			return held.Data["cluster-1"]
		}).ShouldNot(Equal(old), "the reader token is re-issued")
		Expect(clusterCondition("cluster-2", v1beta1.ConditionApplied)).To(Equal("False/" + controller.ReasonNoTemplateSource))
	})

	It("installs a new cluster while another new cluster's first connection hangs", func() {
		c1, c2 := remotes["cluster-1"], remotes["cluster-2"]
		removeMeshConfig()
		Eventually(c1.ownedNames).Should(BeEmpty())
		Eventually(c2.ownedNames).Should(BeEmpty())
		Expect(c1.link.SetMode(farlink.Hung)).To(Succeed())
		// Both are new to an operator that starts now: neither has been connected.
		restartWithBothClusters()

		// cluster-1's first connection ends when its read of the cluster's identity
		// times out; cluster-2 must not have waited for it to find out whether the two
		// IDs are one API server.
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionConnected) }, time.Minute).
			Should(Equal("False/" + controller.ReasonUnreachable))
		failed := meta.FindStatusCondition(clusterStatusOf("cluster-1").Conditions, v1beta1.ConditionConnected).LastTransitionTime
		Eventually(func() string { return clusterCondition("cluster-2", v1beta1.ConditionApplied) }).Should(Equal("True/Applied"))
		created := c2.deployment().CreationTimestamp
		Expect(created.Before(&failed)).To(BeTrue(),
			"cluster-2's istiod was created at %s, not before cluster-1's first connection failed at %s", created, failed)

		Expect(c1.link.SetMode(farlink.Up)).To(Succeed())
		Eventually(func() string { return clusterCondition("cluster-1", v1beta1.ConditionApplied) }, 2*time.Minute).
			Should(Equal("True/Applied"))
	})
})

// notAfter is the expiry of the first certificate in a PEM bundle.
func notAfter(pemData []byte) time.Time {
	block, _ := pem.Decode(pemData)
	Expect(block).NotTo(BeNil())
	cert, err := x509.ParseCertificate(block.Bytes)
	Expect(err).NotTo(HaveOccurred())
	return cert.NotAfter
}

// restartWithBothClusters starts the operator again, so that it has connected to no
// cluster, and creates the ASMMeshConfig with entries for cluster-1 and cluster-2.
func restartWithBothClusters() {
	stopMgr()
	Eventually(mgrDone).Should(BeClosed())
	startManager()
	Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
		Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
			"cluster-1": entry(1), "cluster-2": entry(1)}}})).To(Succeed())
}
