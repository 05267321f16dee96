package envtest

import (
	"context"
	"fmt"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/workqueue"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/apply"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
)

// scaleLabel marks the mesh objects the mirror-at-scale test creates.
var scaleLabel = map[string]string{"example.com/test": "mirror-scale"}

func scaleVirtualService(name string) *unstructured.Unstructured {
	vs := istioObject("networking.istio.io/v1", "VirtualService", name, map[string]any{
		"hosts": []any{name}, "http": []any{map[string]any{"route": []any{map[string]any{"destination": map[string]any{"host": name}}}}}})
	vs.SetLabels(scaleLabel)
	return vs
}

// mirroredVirtualServices counts the copies of VirtualServices in the cluster's
// namespace default, read from its API server directly; -1 while the kind is not
// served.
func (rc *remoteCluster) mirroredVirtualServices() int {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: "VirtualServiceList"})
	if err := rc.client.List(ctx(), list, client.InNamespace("default"), client.MatchingLabels{mirror.MirroredLabel: "mesh"}); err != nil {
		return -1
	}
	for _, item := range list.Items {
		Expect(item.Annotations).To(HaveKey(apply.HashAnnotation), item.Name)
	}
	return len(list.Items)
}

// mirrorWrites is every write of a copy the operator counted for a cluster.
func mirrorWrites(id string) float64 {
	total := 0.0
	for k, v := range clusterMetrics(id) {
		if strings.HasPrefix(k, "mirror_writes_total") {
			total += v
		}
	}
	return total
}

// remoteRequests counts the operator's requests to a cluster by verb, as its client
// counts what crosses the link.
func remoteRequests(id string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range requestMetrics(id) {
		if verb, ok := strings.CutPrefix(k, "remote_requests_total{verb="); ok {
			out[strings.TrimSuffix(verb, "}")] = v
		}
	}
	return out
}

// denyVirtualServiceNamed installs an admission policy in the cluster that refuses
// VirtualServices of one name; it returns the objects to delete.
func denyVirtualServiceNamed(rc *remoteCluster, name string) []client.Object {
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-" + name},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptrTo(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{"networking.istio.io"}, APIVersions: []string{"*"}, Resources: []string{"virtualservices"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: fmt.Sprintf("object.metadata.name != '%s'", name),
				Message:    "this VirtualService is refused by the platform team",
			}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-" + name},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	}
	Expect(rc.client.Create(ctx(), policy)).To(Succeed())
	Expect(rc.client.Create(ctx(), binding)).To(Succeed())
	Eventually(func() error { // the policy takes effect once the API server has loaded it
		return rc.client.Create(ctx(), scaleVirtualService(name), client.DryRunAll)
	}).Should(HaveOccurred())
	return []client.Object{binding, policy}
}

// startDataPlane starts one more data-plane cluster, set up as the suite sets up its
// own (the remote profile, the operator's rights, a remote secret reaching it through a
// far link, see newDataPlane), for a test that changes a cluster in ways the suite's other tests do not
// expect (a switch restarts its gateways). It is not in remotes; stop it with the
// returned function once its entry and remote secret are gone.
func startDataPlane(id string) (*remoteCluster, func()) {
	rc := newDataPlane(id)
	// The suite's stand-in for the Deployment controller runs over remotes only.
	rollCtx, stopRollouts := context.WithCancel(context.Background())
	go func() {
		for rollCtx.Err() == nil {
			rc.rollOut(rollCtx)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	writeRemoteSecret("istio-remote-secret-"+id, map[string][]byte{id: rc.kubeconfig("operator", remoteOperatorGroup)})
	return rc, func() {
		stopRollouts()
		rc.link.Close()
		Expect(rc.env.Stop()).To(Succeed())
	}
}

// clusterStatusOf is a cluster's entry of status.clusters, empty while it has none.
func clusterStatusOf(id string) v1beta1.ClusterStatus {
	for _, cs := range getMeshConfig().Status.Clusters {
		if cs.ClusterID == id {
			return cs
		}
	}
	return v1beta1.ClusterStatus{}
}

var _ = Describe("the mirror at scale, through a far link", Ordered, func() {
	const (
		objects = 1000
		id      = "cluster-far"
		// onlyInMesh is a namespace the mesh cluster has and the cluster does not.
		onlyInMesh = "mirror-only-in-mesh"
	)
	var rc *remoteCluster
	condition := func(typ string) func() string { return func() string { return clusterCondition(id, typ) } }
	mirrored := func() int32 { return clusterStatusOf(id).MirroredObjects }

	BeforeAll(func() {
		Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{})).
			To(Satisfy(apierrors.IsNotFound), "another test left the ASMMeshConfig behind")
		var stop func()
		rc, stop = startDataPlane(id)
		DeferCleanup(func() {
			rc.link.SetLatency(0)
			removeMeshConfig()
			Eventually(rc.ownedNames).Should(BeEmpty())
			Expect(mesh.Delete(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "istio-remote-secret-" + id, Namespace: ns}})).To(Succeed())
			for _, kind := range []string{"VirtualService", "Sidecar", "ServiceEntry"} {
				for _, namespace := range []string{"default", onlyInMesh} {
					u := &unstructured.Unstructured{}
					u.SetGroupVersionKind(schema.GroupVersionKind{Group: "networking.istio.io", Version: "v1", Kind: kind})
					Expect(mesh.DeleteAllOf(ctx(), u, client.InNamespace(namespace), client.MatchingLabels(scaleLabel))).To(Succeed())
				}
			}
			deleteMeshNamespace(onlyInMesh)
			stop()
		})
	})

	It("mirrors 1,000 objects to a cluster 100 ms away, switches it, and writes nothing after a restart", func() {
		names := make([]string, objects)
		for i := range names {
			names[i] = fmt.Sprintf("scale-%04d", i)
		}
		workqueue.ParallelizeUntil(ctx(), 8, objects, func(i int) {
			defer GinkgoRecover()
			Expect(mesh.Create(ctx(), scaleVirtualService(names[i]))).To(Succeed())
		})
		rc.link.SetLatency(100 * time.Millisecond)
		start := time.Now()
		Expect(mesh.Create(ctx(), &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: v1beta1.DefaultName},
			Spec: v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{id: entry(1)}}})).To(Succeed())
		Eventually(rc.mirroredVirtualServices, 4*time.Minute, time.Second).Should(Equal(objects))
		GinkgoWriter.Printf("%d copies landed through a 100 ms link %s after the entry was created\n", objects, time.Since(start))
		Eventually(condition(v1beta1.ConditionConfigMirrored)).Should(Equal("True/" + controller.ReasonMirrored))
		Expect(mirrored()).To(BeEquivalentTo(objects))
		rc.markAvailable()
		Eventually(condition(v1beta1.ConditionSwitched)).Should(Equal("True/" + controller.ReasonSwitched))
		Eventually(readyCondition).Should(Equal("True/Ready"))
		GinkgoWriter.Printf("switched and Ready %s after the entry was created\n", time.Since(start))

		By("restarting the operator, whose applier then remembers nothing")
		before := rc.owned()
		writes := mirrorWrites(id)
		stopMgr()
		Eventually(mgrDone).Should(BeClosed())
		requests := remoteRequests(id) // the stopped manager's connections may have taken their series along
		startManager()
		// One new object: once its copy is there, a whole pass has run after the
		// restart, and it wrote that copy and nothing else.
		Expect(mesh.Create(ctx(), scaleVirtualService("scale-after-restart"))).To(Succeed())
		Eventually(rc.mirroredVirtualServices).Should(Equal(objects + 1))
		Eventually(mirrored).Should(BeEquivalentTo(objects + 1))
		Consistently(func() float64 { return mirrorWrites(id) - writes }, "3s").Should(Equal(1.0))
		after := rc.owned()
		var rewritten []string
		for k, rv := range before {
			copied := strings.HasPrefix(k, "VirtualService/") || strings.HasPrefix(k, "CustomResourceDefinition/")
			if copied && after[k] != rv {
				rewritten = append(rewritten, k)
			}
		}
		Expect(rewritten).To(BeEmpty(), "objects written after the restart")
		// Counted on the link: the one write after the restart is the new copy (istiod's
		// own objects are recognised by their hash annotation too); the mirror's reads
		// are a List per kind, not a read per copy.
		sent, now := map[string]float64{}, remoteRequests(id)
		for verb, n := range now {
			if n < requests[verb] {
				// The new manager's connection started the series anew, as a new process
				// does: count from zero, as Prometheus does after a counter reset.
				requests = map[string]float64{}
			}
		}
		for verb, n := range now {
			sent[verb] = n - requests[verb]
		}
		GinkgoWriter.Printf("requests to %s from the restart to the new copy: %v\n", id, sent)
		Expect(sent["get"]).To(BeNumerically(">", 0), "no requests counted: the count is not where it is looked for")
		Expect(sent["patch"]+sent["create"]+sent["update"]+sent["delete"]).To(Equal(1.0), "writes after the restart: %v", sent)
		Expect(sent["get"]).To(BeNumerically("<", objects/10))
		Expect(readyCondition()).To(Equal("True/Ready"))
	})

	It("names the copy the cluster refuses and mirrors every other", func() {
		for _, o := range denyVirtualServiceNamed(rc, "scale-refused") {
			DeferCleanup(func() { Expect(client.IgnoreNotFound(rc.client.Delete(ctx(), o))).To(Succeed()) })
		}
		Expect(mesh.Create(ctx(), scaleVirtualService("scale-refused"))).To(Succeed())
		Expect(mesh.Create(ctx(), scaleVirtualService("scale-accepted"))).To(Succeed())
		Eventually(condition(v1beta1.ConditionConfigMirrored)).Should(Equal("False/" + controller.ReasonCopiesRefused))
		Expect(clusterConditionMessage(id, v1beta1.ConditionConfigMirrored)).To(And(
			ContainSubstring("VirtualService default/scale-refused"), ContainSubstring("refused by the platform team")))
		Eventually(mirrored).Should(BeEquivalentTo(objects + 2))
		Expect(rc.istioSpec(scaleVirtualService("scale-accepted"))).NotTo(BeEmpty())
		Expect(rc.istioSpec(scaleVirtualService("scale-refused"))).To(BeEmpty())
		Expect(eventReasons()).To(ContainElement(controller.ReasonCopiesRefused))
		// The rest of the reconcile goes on: the cluster stays switched.
		Expect(clusterCondition(id, v1beta1.ConditionSwitched)).To(Equal("True/" + controller.ReasonSwitched))

		Expect(mesh.Delete(ctx(), scaleVirtualService("scale-refused"))).To(Succeed())
		Eventually(condition(v1beta1.ConditionConfigMirrored)).Should(Equal("True/" + controller.ReasonMirrored))
		Eventually(readyCondition).Should(Equal("True/Ready"))
	})

	It("is Ready while objects sit in a namespace the cluster lacks, and names them", func() {
		Expect(mesh.Create(ctx(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: onlyInMesh}})).To(Succeed())
		sidecar := istioObject("networking.istio.io/v1", "Sidecar", "default", map[string]any{"egress": []any{map[string]any{"hosts": []any{"./*"}}}})
		serviceEntry := istioObject("networking.istio.io/v1", "ServiceEntry", "external-api", map[string]any{
			"hosts": []any{"api.example.com"}, "location": "MESH_EXTERNAL", "resolution": "DNS",
			"ports": []any{map[string]any{"number": int64(443), "name": "tls", "protocol": "TLS"}}})
		for _, o := range []*unstructured.Unstructured{sidecar, serviceEntry} {
			o.SetNamespace(onlyInMesh)
			o.SetLabels(scaleLabel)
			Expect(mesh.Create(ctx(), o)).To(Succeed())
		}
		Eventually(func() string { return clusterConditionMessage(id, v1beta1.ConditionConfigMirrored) }).Should(And(
			ContainSubstring("Sidecar "+onlyInMesh+"/default"),
			ContainSubstring("ServiceEntry "+onlyInMesh+"/external-api (exported to all namespaces by default)")))
		Expect(clusterCondition(id, v1beta1.ConditionConfigMirrored)).To(Equal("True/" + controller.ReasonMirrored))
		Eventually(readyCondition).Should(Equal("True/Ready"))
		Expect(eventReasons()).To(ContainElement(controller.ReasonNamespaceMissing))
		Expect(rc.client.Get(ctx(), types.NamespacedName{Name: onlyInMesh}, &corev1.Namespace{})).To(Satisfy(apierrors.IsNotFound),
			"the operator never creates a namespace for a copy")
	})
})

// deleteMeshNamespace deletes a namespace of the mesh cluster and finalizes it, as the
// namespace controller envtest does not run would once it is empty.
func deleteMeshNamespace(name string) {
	n := &corev1.Namespace{}
	if err := mesh.Get(ctx(), types.NamespacedName{Name: name}, n); apierrors.IsNotFound(err) {
		return
	}
	Expect(client.IgnoreNotFound(mesh.Delete(ctx(), n))).To(Succeed())
	clientset, err := kubernetes.NewForConfig(meshEnv.Config)
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error {
		live, err := clientset.CoreV1().Namespaces().Get(ctx(), name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		live.Spec.Finalizers = nil
		_, err = clientset.CoreV1().Namespaces().Finalize(ctx(), live, metav1.UpdateOptions{})
		return err
	}).Should(Succeed())
	Eventually(func() bool {
		return apierrors.IsNotFound(mesh.Get(ctx(), types.NamespacedName{Name: name}, &corev1.Namespace{}))
	}).Should(BeTrue())
}
