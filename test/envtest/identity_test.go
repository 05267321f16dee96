package envtest

import (
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/istiochart"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// labelledFor lists, as Kind/name, what carries the operator's label for cluster ID id
// in a cluster.
func labelledFor(c client.Client, id string) []string {
	var out []string
	for _, gvk := range append([]schema.GroupVersionKind{corev1.SchemeGroupVersion.WithKind("Secret")}, render.OwnedKinds...) {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		Expect(c.List(ctx(), list, client.MatchingLabels{render.ClusterIDLabel: id})).To(Succeed())
		for _, item := range list.Items {
			out = append(out, gvk.Kind+"/"+item.Namespace+"/"+item.Name)
		}
	}
	return out
}

// setEntries replaces the ASMMeshConfig's entries, creating it when there is none.
func setEntries(entries map[string]v1beta1.ExternalIstiodConfiguration) {
	mc := &v1beta1.ASMMeshConfig{}
	if err := mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, mc); apierrors.IsNotFound(err) {
		mc = &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: entries}}
		Expect(mesh.Create(ctx(), mc)).To(Succeed())
		return
	}
	updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.ExternalIstiodConfigurations = entries })
}

var _ = Describe("which clusters the operator connects to, and which it refuses", Ordered, ContinueOnFailure, func() {
	const (
		id    = "cluster-3"
		alias = "cluster-3-alias" // a second ID for cluster-3's API server
		// nowhere is an entry no remote secret provides: once it is reported, the
		// operator has seen the ASMMeshConfig.
		nowhere = "cluster-nowhere"
		// meshAlias is an ID whose remote secret reaches the mesh cluster's API server.
		meshAlias = "mesh-alias"
	)
	var rc *remoteCluster
	condition := func(cluster, typ string) func() string {
		return func() string { return clusterCondition(cluster, typ) }
	}
	var secrets []string

	BeforeAll(func() {
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		var stop func()
		rc, stop = startDataPlane(id)
		secrets = append(secrets, "istio-remote-secret-"+id)
		DeferCleanup(func() {
			removeMeshConfig()
			Eventually(rc.ownedNames).Should(BeEmpty())
			for _, name := range secrets {
				Expect(client.IgnoreNotFound(mesh.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}))).To(Succeed())
			}
			stop()
		})
	})

	It("dials a remote secret's cluster only once an entry names it, and lets it go with the entry", func() {
		others := map[string]int64{}
		for other, r := range remotes {
			others[other] = r.link.Stats().Connections
		}
		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{nowhere: entry(1)})
		Eventually(condition(nowhere, v1beta1.ConditionConnected)).Should(Equal("False/" + controller.ReasonRemoteSecretAbsent))
		Consistently(func() int64 { return rc.link.Stats().Connections }, 3*time.Second).Should(BeZero(),
			"the operator connected to a cluster no entry names")
		Expect(requestMetrics(id)).To(BeEmpty())
		for other, r := range remotes {
			Expect(r.link.Stats().Connections).To(Equal(others[other]), "connections to %s, which has no entry", other)
		}

		start := time.Now()
		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{nowhere: entry(1), id: entry(1)})
		Eventually(func() int64 { return rc.link.Stats().Connections }, 10*time.Second).Should(BeNumerically(">", 0))
		Eventually(condition(id, v1beta1.ConditionConnected), 20*time.Second).Should(Equal("True/" + controller.ReasonConnected))
		GinkgoWriter.Printf("connected to %s %s after its entry was added\n", id, time.Since(start))
		Eventually(condition(id, v1beta1.ConditionApplied)).Should(Equal("True/" + controller.ReasonApplied))

		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{nowhere: entry(1)})
		Eventually(func() v1beta1.ClusterStatus { return clusterStatusOf(id) }).Should(Equal(v1beta1.ClusterStatus{}))
		Eventually(rc.ownedNames).Should(BeEmpty())
		// Disconnected: its client (and the series that follow it) is gone, and
		// nothing dials the cluster any more.
		Eventually(func() map[string]float64 { return requestMetrics(id) }).Should(BeEmpty())
		dialled := rc.link.Stats().Connections
		Consistently(func() int64 { return rc.link.Stats().Connections }, 3*time.Second).Should(Equal(dialled))
	})

	It("refuses an entry for the mesh cluster's own ID, or one whose kubeconfig reaches the mesh cluster", func() {
		objs, err := istiochart.MeshControlPlane(istiochart.MeshOptions{ClusterID: meshClusterID})
		Expect(err).NotTo(HaveOccurred())
		istiod := &appsv1.Deployment{}
		Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(istiochart.Find(objs, "Deployment", ns, "istiod").Object, istiod)).To(Succeed())
		if err := mesh.Create(ctx(), istiod); err == nil {
			DeferCleanup(func() { Expect(client.IgnoreNotFound(mesh.Delete(ctx(), istiod))).To(Succeed()) })
		} else {
			Expect(apierrors.IsAlreadyExists(err)).To(BeTrue(), "%v", err)
		}
		u, err := meshEnv.AddUser(envtest.User{Name: "mesh-alias-admin", Groups: []string{"system:masters"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		raw, err := u.KubeConfig()
		Expect(err).NotTo(HaveOccurred())
		rememberKubeconfig(raw)
		writeRemoteSecret("istio-remote-secret-"+meshAlias, map[string][]byte{meshAlias: raw})
		secrets = append(secrets, "istio-remote-secret-"+meshAlias)

		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{meshClusterID: entry(1), meshAlias: entry(1)})
		Eventually(condition(meshClusterID, v1beta1.ConditionConnected)).Should(Equal("False/" + controller.ReasonMeshClusterEntry))
		Expect(clusterConditionMessage(meshClusterID, v1beta1.ConditionConnected)).To(ContainSubstring(
			"CLUSTER_ID of the mesh istiod istio-system/istiod"))
		Eventually(condition(meshAlias, v1beta1.ConditionConnected)).Should(Equal("False/" + controller.ReasonMeshClusterEntry))
		Expect(clusterConditionMessage(meshAlias, v1beta1.ConditionConnected)).To(ContainSubstring("reaches the mesh cluster's own API server"))
		Expect(condition(meshAlias, v1beta1.ConditionReady)()).To(Equal("False/" + controller.ReasonMeshClusterEntry))
		Consistently(func() []string { return labelledFor(mesh, meshAlias) }, 3*time.Second).Should(BeEmpty(),
			"the operator wrote into the mesh cluster as a data-plane cluster")
		Expect(eventReasons()).To(ContainElement(controller.ReasonMeshClusterEntry))
		Eventually(readyCondition).Should(Equal("False/" + controller.ReasonClustersNotReady))

		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{nowhere: entry(1)})
		Eventually(func() v1beta1.ClusterStatus { return clusterStatusOf(meshAlias) }).Should(Equal(v1beta1.ClusterStatus{}))
		Eventually(func() v1beta1.ClusterStatus { return clusterStatusOf(meshClusterID) }).Should(Equal(v1beta1.ClusterStatus{}))
		Expect(labelledFor(mesh, meshAlias)).To(BeEmpty())
	})

	It("refuses a second cluster ID whose kubeconfig reaches the same API server by another URL", func() {
		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{id: entry(1)})
		Eventually(condition(id, v1beta1.ConditionApplied)).Should(Equal("True/" + controller.ReasonApplied))
		owned := rc.owned()

		// The same API server, not through the far link but straight at its address.
		kc, err := clientcmd.Load(rc.kubeconfig("operator-alias", remoteOperatorGroup))
		Expect(err).NotTo(HaveOccurred())
		for _, c := range kc.Clusters {
			Expect(c.Server).NotTo(Equal(rc.env.Config.Host))
			c.Server = rc.env.Config.Host
		}
		raw, err := clientcmd.Write(*kc)
		Expect(err).NotTo(HaveOccurred())
		writeRemoteSecret("istio-remote-secret-"+alias, map[string][]byte{alias: raw})
		secrets = append(secrets, "istio-remote-secret-"+alias)

		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{id: entry(1), alias: entry(1)})
		Eventually(condition(alias, v1beta1.ConditionConnected)).Should(Equal("False/" + controller.ReasonDuplicateCluster))
		Expect(clusterConditionMessage(alias, v1beta1.ConditionConnected)).To(And(
			ContainSubstring("reaches the same API server as cluster "+id), ContainSubstring("remove the entry "+alias)))
		Consistently(func() []string { return labelledFor(rc.client, alias) }, 3*time.Second).Should(BeEmpty(),
			"the second ID wrote into the cluster")
		Expect(rc.owned()).To(Equal(owned), "the second ID changed what the first applied")
		Expect(condition(id, v1beta1.ConditionConnected)()).To(Equal("True/" + controller.ReasonConnected))
		Expect(eventReasons()).To(ContainElement(controller.ReasonDuplicateCluster))

		// Its entry gone, the refused ID is forgotten without touching the cluster.
		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{id: entry(1)})
		Eventually(func() v1beta1.ClusterStatus { return clusterStatusOf(alias) }).Should(Equal(v1beta1.ClusterStatus{}))
		Expect(rc.owned()).To(Equal(owned))
	})

	It("lets exactly one of two new cluster IDs of one API server go ahead", func() {
		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{nowhere: entry(1)})
		Eventually(rc.ownedNames).Should(BeEmpty())
		Eventually(func() v1beta1.ClusterStatus { return clusterStatusOf(id) }).Should(Equal(v1beta1.ClusterStatus{}))
		// Neither is connected to an operator that starts now, and neither has been worked in.
		stopMgr()
		Eventually(mgrDone).Should(BeClosed())
		startManager()
		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{id: entry(1), alias: entry(1)})
		connected := func() []string {
			return []string{condition(id, v1beta1.ConditionConnected)(), condition(alias, v1beta1.ConditionConnected)()}
		}
		Eventually(connected).Should(ConsistOf("True/"+controller.ReasonConnected, "False/"+controller.ReasonDuplicateCluster))
		Consistently(connected, 3*time.Second).Should(ConsistOf("True/"+controller.ReasonConnected, "False/"+controller.ReasonDuplicateCluster))
		kept, refused := id, alias
		if connected()[0] != "True/"+controller.ReasonConnected {
			kept, refused = alias, id
		}
		Eventually(condition(kept, v1beta1.ConditionApplied)).Should(Equal("True/" + controller.ReasonApplied))
		Expect(labelledFor(rc.client, refused)).To(BeEmpty(), "the refused ID wrote into the cluster")

		// Leave the cluster as the spec before left it: installed under id, alias gone.
		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{id: entry(1)})
		Eventually(func() v1beta1.ClusterStatus { return clusterStatusOf(alias) }).Should(Equal(v1beta1.ClusterStatus{}))
		Eventually(condition(id, v1beta1.ConditionApplied)).Should(Equal("True/" + controller.ReasonApplied))
		Expect(labelledFor(rc.client, alias)).To(BeEmpty())
	})

	It("warns when the trust domain of a switched cluster changes, and goes ahead", func() {
		setEntries(map[string]v1beta1.ExternalIstiodConfiguration{id: entry(1)})
		rc.markAvailable()
		Eventually(condition(id, v1beta1.ConditionSwitched)).Should(Equal("True/" + controller.ReasonSwitched))
		Expect(clusterStatusOf(id).TrustDomain).To(Equal("cluster.local"))
		Expect(condition(id, v1beta1.ConditionTrustDomainChanged)()).To(BeEmpty())

		updateMeshConfig(func(mc *v1beta1.ASMMeshConfig) { mc.Spec.TrustDomain = "fleet.example" })
		Eventually(condition(id, v1beta1.ConditionTrustDomainChanged)).Should(Equal("True/" + controller.ReasonTrustDomainChanged))
		Expect(clusterConditionMessage(id, v1beta1.ConditionTrustDomainChanged)).To(And(
			ContainSubstring("from cluster.local to fleet.example"), ContainSubstring("every workload identity")))
		Expect(eventReasons()).To(ContainElement(controller.ReasonTrustDomainChanged))
		Eventually(func() string { return configMapIn(rc.client, "istio").Data["mesh"] }).Should(ContainSubstring("trustDomain: fleet.example"))
		Expect(clusterStatusOf(id).TrustDomain).To(Equal("fleet.example"))
		Eventually(readyCondition).Should(Equal("True/Ready"), "a warning, not a failure")
	})
})
