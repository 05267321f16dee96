package envtest

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"sort"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	ctrlmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/mirror"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// installed is what the operator owns in cluster-2, which had no Istio CRDs, before the
// switch: istiod and the CRDs the mirror needs. Not Service istiod: the remote profile
// has one, the cluster's control plane address, which the switch makes lead to the
// local istiod instead. Nor a validator: the remote profile's is taken over in place.
var installed = sorted(append(istioCRDNames(), without(without(fullIstiod, addressService), ownValidator)...))

// installedOneReplica is what it owns in cluster-1 with one istiod replica: no
// PodDisruptionBudget.
var installedOneReplica = sorted(without(installed, "PodDisruptionBudget/istio-system/istiod"))

const addressService = "Service/istio-system/istiod"

// ownValidator is the operator's own validator, istio-validator-istio-system as Istio's
// chart names it; base's istiod-default-validator is the remote profile's.
const ownValidator = "ValidatingWebhookConfiguration/istio-validator-istio-system"

func without(s []string, drop string) []string {
	var out []string
	for _, v := range s {
		if v != drop {
			out = append(out, v)
		}
	}
	return out
}

// switchedIstiod is what it owns once injection moved to the local istiod: also the
// switch record.
var switchedIstiod = sorted(append([]string{"ConfigMap/istio-system/remote-istiod-operator-switch"}, installed...))

func istioCRDNames() []string {
	var names []string
	for _, crd := range mirror.CRDs() {
		names = append(names, "CustomResourceDefinition/"+crd.GetName())
	}
	return names
}

func sorted(s []string) []string {
	sort.Strings(s)
	return s
}

// fullIstiod is every object a complete istiod has in a data-plane cluster. The
// injection webhook is not among them: the cluster's own injector (the mesh control
// plane's) is taken over in place when the cluster switches.
var fullIstiod = []string{
	"ClusterRole/istiod-clusterrole-istio-system",
	"ClusterRole/istiod-gateway-controller-istio-system",
	"ClusterRoleBinding/istiod-clusterrole-istio-system",
	"ClusterRoleBinding/istiod-gateway-controller-istio-system",
	"ConfigMap/istio-system/istio",
	"ConfigMap/istio-system/istio-sidecar-injector",
	"Deployment/istio-system/istiod",
	"PodDisruptionBudget/istio-system/istiod",
	"Role/istio-system/istiod",
	"Secret/istio-system/cacerts",
	"RoleBinding/istio-system/istiod",
	"Service/istio-system/istiod",
	"ServiceAccount/istio-system/istiod",
	ownValidator,
}

// owned lists what carries the operator's label in a cluster, read from its API
// server, as "Kind/[namespace/]name" -> resourceVersion.
func (rc *remoteCluster) owned() map[string]string {
	out := map[string]string{}
	for _, gvk := range append(append(mirror.Kinds(), mirror.CRDGVK, corev1.SchemeGroupVersion.WithKind("Secret")), render.OwnedKinds...) {
		list := &metav1.PartialObjectMetadataList{}
		list.SetGroupVersionKind(gvk.GroupVersion().WithKind(gvk.Kind + "List"))
		err := rc.client.List(ctx(), list, client.MatchingLabels{render.ManagedByLabel: render.ManagedByValue})
		if apierrors.IsNotFound(err) || meta.IsNoMatchError(err) {
			continue // Istio's kinds exist only while their CRDs do
		}
		Expect(err).NotTo(HaveOccurred())
		for _, item := range list.Items {
			key := gvk.Kind + "/" + item.Name
			if item.Namespace != "" {
				key = gvk.Kind + "/" + item.Namespace + "/" + item.Name
			}
			out[key] = item.ResourceVersion
		}
	}
	return out
}

func (rc *remoteCluster) ownedNames() []string {
	var names []string
	for k := range rc.owned() {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func (rc *remoteCluster) deployment() *appsv1.Deployment {
	d := &appsv1.Deployment{}
	Expect(rc.client.Get(ctx(), types.NamespacedName{Namespace: ns, Name: "istiod"}, d)).To(Succeed())
	return d
}

// markAvailable does what a kubelet and the Deployment controller would: report all
// replicas of the current generation available; and what a running istiod would:
// publish its root certificate.
func (rc *remoteCluster) markAvailable() {
	root := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-ca-root-cert", Namespace: ns}}
	_, err := ctrl.CreateOrUpdate(ctx(), rc.client, root, func() error {
		root.Data = map[string]string{"root-cert.pem": "local-root-of-" + rc.id}
		return nil
	})
	Expect(err).NotTo(HaveOccurred())
	Eventually(func() error {
		d := rc.deployment()
		n := *d.Spec.Replicas
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: d.Generation, Replicas: n, UpdatedReplicas: n,
			ReadyReplicas: n, AvailableReplicas: n}
		return rc.client.Status().Update(ctx(), d)
	}).Should(Succeed())
}

// removeMeshConfig deletes the ASMMeshConfig, if there is one, and waits until the
// operator has let it go.
func removeMeshConfig() {
	mc := &v1beta1.ASMMeshConfig{}
	if err := mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, mc); err == nil {
		Expect(mesh.Delete(ctx(), mc)).To(Succeed())
	}
	Eventually(func() bool {
		return apierrors.IsNotFound(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, &v1beta1.ASMMeshConfig{}))
	}).Should(BeTrue())
}

func getMeshConfig() *v1beta1.ASMMeshConfig {
	mc := &v1beta1.ASMMeshConfig{}
	Expect(mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, mc)).To(Succeed())
	raw, err := json.Marshal(mc.Status)
	Expect(err).NotTo(HaveOccurred())
	_, _ = statusSeen.Write(raw)
	return mc
}

func updateMeshConfig(edit func(*v1beta1.ASMMeshConfig)) {
	Eventually(func() error {
		mc := getMeshConfig()
		edit(mc)
		return mesh.Update(ctx(), mc)
	}).Should(Succeed())
}

// clusterCondition returns "Status/Reason" of a cluster's condition, or "".
func clusterCondition(id, typ string) string {
	mc := &v1beta1.ASMMeshConfig{}
	if err := mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, mc); err != nil {
		return ""
	}
	for _, cs := range mc.Status.Clusters {
		if cs.ClusterID == id {
			if c := meta.FindStatusCondition(cs.Conditions, typ); c != nil && cs.ObservedGeneration == mc.Generation {
				return string(c.Status) + "/" + c.Reason
			}
		}
	}
	return ""
}

// clusterConditionMessage is the message of a cluster's condition, "" when absent.
func clusterConditionMessage(id, typ string) string {
	for _, cs := range getMeshConfig().Status.Clusters {
		if c := meta.FindStatusCondition(cs.Conditions, typ); cs.ClusterID == id && c != nil {
			return c.Message
		}
	}
	return ""
}

// readyCondition returns "Status/Reason" of the ASMMeshConfig's Ready condition once
// it describes the current generation (kstatus).
func readyCondition() string {
	mc := &v1beta1.ASMMeshConfig{}
	if err := mesh.Get(ctx(), types.NamespacedName{Name: v1beta1.DefaultName}, mc); err != nil {
		return ""
	}
	c := meta.FindStatusCondition(mc.Status.Conditions, v1beta1.ConditionReady)
	if c == nil || mc.Status.ObservedGeneration != mc.Generation || c.ObservedGeneration != mc.Generation {
		return ""
	}
	return string(c.Status) + "/" + c.Reason
}

// reconciles counts finished reconciles of the per-cluster controller.
// settled waits until no reconcile has run for a second, so that what a spec does next
// is not also done by a pass still under way.
func settled() {
	GinkgoHelper()
	Eventually(func() bool {
		before := reconciles()
		time.Sleep(time.Second)
		return reconciles() == before
	}, "30s", "10ms").Should(BeTrue())
}

func reconciles() float64 {
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	total := 0.0
	for _, f := range families {
		if f.GetName() != "controller_runtime_reconcile_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "controller" && l.GetValue() == "remote-istiod" {
					total += m.GetCounter().GetValue()
				}
			}
		}
	}
	return total
}

// clusterMetrics returns the operator's own series for a cluster, as the manager's
// metrics endpoint serves them: the name without its remote_istiod_operator_ prefix,
// other labels in braces ("gateway_restarts_total{direction=switch}"); a histogram
// gives its sample count as name_count.
func clusterMetrics(id string) map[string]float64 {
	return seriesOf(id, func(name string) bool { return !connectionMetrics[name] })
}

// connectionMetrics follow the operator's client for a cluster, which lives while the
// operator needs the cluster (an entry, a removal, or a peer of mutual access).
var connectionMetrics = map[string]bool{"remote_requests_total": true}

// requestMetrics returns the connection series of a cluster, as clusterMetrics does.
func requestMetrics(id string) map[string]float64 {
	return seriesOf(id, func(name string) bool { return connectionMetrics[name] })
}

func seriesOf(id string, include func(name string) bool) map[string]float64 {
	families, err := ctrlmetrics.Registry.Gather()
	Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	for _, f := range families {
		name, ok := strings.CutPrefix(f.GetName(), "remote_istiod_operator_")
		if !ok || !include(name) {
			continue
		}
		for _, m := range f.GetMetric() {
			var cluster string
			var others []string
			for _, l := range m.GetLabel() {
				if l.GetName() == "cluster" {
					cluster = l.GetValue()
				} else {
					others = append(others, l.GetName()+"="+l.GetValue())
				}
			}
			if cluster != id {
				continue
			}
			key := name
			if len(others) > 0 {
				key += "{" + strings.Join(others, ",") + "}"
			}
			switch {
			case m.GetHistogram() != nil:
				out[key+"_count"] = float64(m.GetHistogram().GetSampleCount())
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			default:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

// denyInjectorConfigMaps installs an admission policy, as a cluster's platform team
// might, that refuses the injector ConfigMap; it returns the objects to delete.
func denyInjectorConfigMaps(rc *remoteCluster) []client.Object {
	policy := &admissionv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-injector-configmap"},
		Spec: admissionv1.ValidatingAdmissionPolicySpec{
			FailurePolicy: ptrTo(admissionv1.Fail),
			MatchConstraints: &admissionv1.MatchResources{ResourceRules: []admissionv1.NamedRuleWithOperations{{
				RuleWithOperations: admissionv1.RuleWithOperations{
					Operations: []admissionv1.OperationType{admissionv1.Create, admissionv1.Update},
					Rule:       admissionv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
				},
			}}},
			Validations: []admissionv1.Validation{{
				Expression: "object.metadata.name != 'istio-sidecar-injector'",
				Message:    "injector ConfigMaps are managed by the platform team",
			}},
		},
	}
	binding := &admissionv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "deny-injector-configmap"},
		Spec: admissionv1.ValidatingAdmissionPolicyBindingSpec{PolicyName: policy.Name,
			ValidationActions: []admissionv1.ValidationAction{admissionv1.Deny}},
	}
	Expect(rc.client.Create(ctx(), policy)).To(Succeed())
	Expect(rc.client.Create(ctx(), binding)).To(Succeed())
	// The policy takes effect once the API server has loaded it.
	Eventually(func() error {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "istio-sidecar-injector", Namespace: ns}}
		return rc.client.Create(ctx(), cm, client.DryRunAll)
	}).Should(HaveOccurred())
	return []client.Object{binding, policy}
}

// eventReasons lists the reasons of the events about the ASMMeshConfig.
func eventReasons() []string {
	list := &eventsv1.EventList{}
	Expect(mesh.List(ctx(), list)).To(Succeed())
	var reasons []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "ASMMeshConfig" {
			reasons = append(reasons, e.Reason)
		}
	}
	return reasons
}

func istioObject(apiVersion, kind, name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": apiVersion, "kind": kind, "spec": spec}}
	u.SetNamespace("default")
	u.SetName(name)
	return u
}

// istioSpec returns the JSON spec of the cluster's object like obj, "" when it has none.
func (rc *remoteCluster) istioSpec(obj *unstructured.Unstructured) string {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(obj.GroupVersionKind())
	if err := rc.client.Get(ctx(), client.ObjectKeyFromObject(obj), u); err != nil {
		return ""
	}
	raw, err := json.Marshal(u.Object["spec"])
	Expect(err).NotTo(HaveOccurred())
	return string(raw)
}

// kubeconfigClient connects with a kubeconfig the operator handed out, and checks that
// it authenticates with a token, not with the operator's own credentials.
func kubeconfigClient(kubeconfig []byte) client.Client {
	rememberKubeconfig(kubeconfig)
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	Expect(err).NotTo(HaveOccurred())
	Expect(cfg.BearerToken).NotTo(BeEmpty())
	Expect(cfg.CertData).To(BeEmpty())
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	return c
}

// verifiesAgainstMeshRoot checks a cacerts bundle: its CA certificate is signed, through
// its chain, by the mesh root.
func verifiesAgainstMeshRoot(b map[string][]byte) error {
	roots, intermediates := x509.NewCertPool(), x509.NewCertPool()
	roots.AppendCertsFromPEM(meshCA["root-cert.pem"])
	intermediates.AppendCertsFromPEM(b["cert-chain.pem"])
	block, _ := pem.Decode(b["ca-cert.pem"])
	if block == nil {
		return fmt.Errorf("no ca-cert.pem")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return err
	}
	_, err = cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: intermediates, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	return err
}

// withoutAdmissionRule runs body while the ASMMeshConfig CRD lacks the CEL rule whose
// message mentions field, then puts the rule back.
func withoutAdmissionRule(field string, body func()) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	key := client.ObjectKey{Name: "asmmeshconfigs." + v1beta1.GroupVersion.Group}
	Expect(mesh.Get(ctx(), key, crd)).To(Succeed())
	original := crd.DeepCopy()
	spec := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	var kept apiextensionsv1.ValidationRules
	for _, rule := range spec.XValidations {
		if !strings.Contains(rule.Message, field) {
			kept = append(kept, rule)
		}
	}
	Expect(kept).To(HaveLen(len(spec.XValidations) - 1))
	spec.XValidations = kept
	crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"] = spec
	Expect(mesh.Update(ctx(), crd)).To(Succeed())
	defer func() {
		Eventually(func() error {
			live := &apiextensionsv1.CustomResourceDefinition{}
			if err := mesh.Get(ctx(), key, live); err != nil {
				return err
			}
			live.Spec = original.Spec
			return mesh.Update(ctx(), live)
		}).Should(Succeed())
	}()
	body()
}
