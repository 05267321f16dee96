package envtest

import (
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/access"
)

// Feature: the reader tokens mutual access hands to a cluster's istiod read no Secret
// in any other cluster, the mesh cluster included: not the intermediate or mesh CA key
// (istio-system/cacerts), not the remote secrets. Each case fails if the reader role
// grants Secrets (get, list or watch, in a namespace or cluster-wide), or ConfigMaps
// beyond the mesh config.
var _ = Describe("the reader of mutual access", Ordered, func() {
	// readers are the handed-out kubeconfigs cluster-2 holds, per peer.
	readers := map[string][]byte{}

	BeforeAll(func() {
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		// The mesh cluster registered with a remote secret of its own, as the README
		// suggests for mutual access: its istio-system holds the mesh CA and every
		// remote secret.
		u, err := meshEnv.AddUser(envtest.User{Name: "mesh-admin-reader-test", Groups: []string{"system:masters"}}, nil)
		Expect(err).NotTo(HaveOccurred())
		raw, err := u.KubeConfig()
		Expect(err).NotTo(HaveOccurred())
		rememberKubeconfig(raw)
		writeRemoteSecret(access.SecretName(meshClusterID), map[string][]byte{meshClusterID: raw})
		// cluster-1's own intermediate CA, so that there is a cacerts to be refused.
		on := entry(1)
		on.MutualAccess = true
		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{
				"cluster-1": entry(1), "cluster-2": on}}})).To(Succeed())
		DeferCleanup(func() {
			removeMeshConfig()
			for _, rc := range remotes {
				Eventually(rc.ownedNames).Should(BeEmpty())
			}
			Eventually(func() error {
				return mesh.Get(ctx(), types.NamespacedName{Name: access.ReaderName("cluster-2")}, &rbacv1.ClusterRoleBinding{})
			}).Should(Satisfy(apierrors.IsNotFound))
			Expect(client.IgnoreNotFound(mesh.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{
				Name: access.SecretName(meshClusterID), Namespace: ns}}))).To(Succeed())
		})
		for _, peer := range []string{"cluster-1", meshClusterID} {
			secret := &corev1.Secret{}
			key := types.NamespacedName{Namespace: ns, Name: access.SecretName(peer)}
			Eventually(func() error { return remotes["cluster-2"].client.Get(ctx(), key, secret) }).Should(Succeed())
			readers[peer] = secret.Data[peer]
		}
		Eventually(func() error {
			return remotes["cluster-1"].client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, &corev1.Secret{})
		}).Should(Succeed())
	})

	// peerClient is the handed-out reader of a peer, and the peer's own admin client.
	peerClient := func(peer string) (kubernetes.Interface, client.Client) {
		reader := kubeconfigClient(readers[peer]) // checks it carries a token only
		Expect(reader).NotTo(BeNil())
		cfg, err := clientcmd.RESTConfigFromKubeConfig(readers[peer])
		Expect(err).NotTo(HaveOccurred())
		cs, err := kubernetes.NewForConfig(cfg)
		Expect(err).NotTo(HaveOccurred())
		if peer == meshClusterID {
			return cs, mesh
		}
		return cs, remotes[peer].client
	}

	for _, peer := range []string{"cluster-1", meshClusterID} {
		It("cannot get, list or watch any Secret of "+peer+", its cacerts included", func() {
			cs, admin := peerClient(peer)
			// cacerts exists there: a refusal is RBAC's, not a missing object.
			Expect(admin.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "cacerts"}, &corev1.Secret{})).To(Succeed())
			_, err := cs.CoreV1().Secrets(ns).Get(ctx(), "cacerts", metav1.GetOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "get %s/cacerts: %v", ns, err)
			_, err = cs.CoreV1().Secrets(ns).List(ctx(), metav1.ListOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "list secrets in %s: %v", ns, err)
			_, err = cs.CoreV1().Secrets("").List(ctx(), metav1.ListOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "list secrets cluster-wide: %v", err)
			_, err = cs.CoreV1().Secrets("").Watch(ctx(), metav1.ListOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "watch secrets cluster-wide: %v", err)
			if peer == meshClusterID {
				// The remote secrets: the operator's (and the mesh istiod's) way into
				// every data-plane cluster.
				_, err = cs.CoreV1().Secrets(ns).Get(ctx(), access.SecretName("cluster-1"), metav1.GetOptions{})
				Expect(apierrors.IsForbidden(err)).To(BeTrue(), "get the remote secret of cluster-1: %v", err)
			}
			// What istiod needs still works.
			_, err = cs.CoreV1().Services("").List(ctx(), metav1.ListOptions{})
			Expect(err).NotTo(HaveOccurred(), "istiod reads the peer's Services")
		})

		It("reads of "+peer+"'s ConfigMaps only the mesh config", func() {
			cs, _ := peerClient(peer)
			_, err := cs.CoreV1().ConfigMaps("").List(ctx(), metav1.ListOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "list configmaps cluster-wide: %v", err)
			_, err = cs.CoreV1().ConfigMaps(ns).Get(ctx(), "istio-ca-root-cert", metav1.GetOptions{})
			Expect(apierrors.IsForbidden(err)).To(BeTrue(), "get another ConfigMap: %v", err)
			// As istiod 1.29+ watches it: by name, with a field selector.
			_, err = cs.CoreV1().ConfigMaps(ns).List(ctx(), metav1.ListOptions{FieldSelector: "metadata.name=" + access.MeshConfigMap})
			Expect(err).NotTo(HaveOccurred(), "list ConfigMap %s by name", access.MeshConfigMap)
		})
	}
})
