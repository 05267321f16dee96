package envtest

import (
	"os"
	"path/filepath"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
)

// The CRD's schema and CEL rules, checked by a real API server: each bad spec is
// refused with a message that says what to fix.
var _ = DescribeTable("admission rejects invalid specs",
	func(spec v1beta1.ASMMeshConfigSpec, message string) {
		mc := &v1beta1.ASMMeshConfig{ObjectMeta: metav1.ObjectMeta{Name: "admission-check"}, Spec: spec}
		err := mesh.Create(ctx(), mc, client.DryRunAll)
		Expect(err).To(HaveOccurred())
		Expect(err.Error()).To(ContainSubstring(message))
	},
	Entry("a cluster ID that is not a label value",
		clusters("cluster_2!", v1beta1.ExternalIstiodConfiguration{}), "must be valid label values"),
	Entry("a cluster ID longer than 63 characters",
		clusters("c123456789012345678901234567890123456789012345678901234567890123", v1beta1.ExternalIstiodConfiguration{}), "at most 63 characters"),
	Entry("zero replicas",
		clusters("cluster-2", v1beta1.ExternalIstiodConfiguration{Replicas: ptrTo[int32](0)}), "should be greater than or equal to 1"),
	Entry("too many replicas",
		clusters("cluster-2", v1beta1.ExternalIstiodConfiguration{Replicas: ptrTo[int32](500)}), "should be less than or equal to 50"),
	Entry("an Istio version older than 1.22",
		v1beta1.ASMMeshConfigSpec{Version: "1.21.4"}, "older than 1.22 are not supported"),
	Entry("an Istio version newer than the operator knows",
		v1beta1.ASMMeshConfigSpec{Version: "1.33.0"}, "newer than 1.32 are not supported by this operator"),
	Entry("the data-plane Kubernetes API for Istio resources together with a remote control plane",
		v1beta1.ASMMeshConfigSpec{UseDataPlaneKubeAPIForIstioResources: true,
			ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{"cluster-2": {}}},
		"set useDataPlaneKubeAPIForIstioResources to false first"),
	Entry("a version that is not an Istio release",
		v1beta1.ASMMeshConfigSpec{Version: "latest"}, "must be an Istio release such as 1.24.3"),
	Entry("a hub with a trailing slash",
		v1beta1.ASMMeshConfigSpec{Hub: "docker.io/istio/"}, "spec.hub must be an image registry path"),
	Entry("a mesh ID that is not a label value",
		v1beta1.ASMMeshConfigSpec{MeshID: "mesh one"}, "spec.meshID must be a valid label value"),
	Entry("an upper-case trust domain",
		v1beta1.ASMMeshConfigSpec{TrustDomain: "Cluster.Local"}, "spec.trustDomain must be a lower-case DNS name"),
	Entry("a network that is not a label value",
		clusters("cluster-2", v1beta1.ExternalIstiodConfiguration{Network: "net work"}), "network must be a valid label value"),
	Entry("a priority class name that is not a DNS name",
		clusters("cluster-2", v1beta1.ExternalIstiodConfiguration{PriorityClassName: "High_Priority"}), "priorityClassName must be the name of a PriorityClass"),
	Entry("a kept host that is not a service hostname",
		clusters("cluster-2", v1beta1.ExternalIstiodConfiguration{KeepTrafficInCluster: &v1beta1.TrafficRetention{Hosts: []string{"Reviews.default:9080"}}}),
		"keepTrafficInCluster.hosts[0]: Invalid value"),
	Entry("more than 64 tolerations",
		clusters("cluster-2", v1beta1.ExternalIstiodConfiguration{Tolerations: make([]corev1.Toleration, 65)}), "must have at most 64 items"),
)

var _ = It("accepts the sample ASMMeshConfig", func() {
	raw, err := os.ReadFile(filepath.Join("..", "..", "config", "samples", "istio_v1beta1_asmmeshconfig.yaml"))
	Expect(err).NotTo(HaveOccurred())
	sample := &v1beta1.ASMMeshConfig{}
	Expect(yaml.UnmarshalStrict(raw, sample)).To(Succeed())
	Expect(sample.Name).To(Equal(v1beta1.DefaultName))
	sample.Name = "sample-check" // the suite's own "default" may exist right now
	Expect(mesh.Create(ctx(), sample, client.DryRunAll)).To(Succeed())
	Expect(sample.Spec.ExternalIstiodConfigurations).To(HaveKey("cluster-2"))
})

func clusters(id string, e v1beta1.ExternalIstiodConfiguration) v1beta1.ASMMeshConfigSpec {
	return v1beta1.ASMMeshConfigSpec{ExternalIstiodConfigurations: map[string]v1beta1.ExternalIstiodConfiguration{id: e}}
}

var _ = It("runs the operator with no more rights than config/rbac grants", func() {
	operator, err := client.New(operatorConfig, client.Options{Scheme: scheme})
	Expect(err).NotTo(HaveOccurred())
	Expect(operator.List(ctx(), &corev1.SecretList{}, client.InNamespace("istio-system"))).To(Succeed())
	for what, err := range map[string]error{
		"list Secrets of other namespaces": operator.List(ctx(), &corev1.SecretList{}, client.InNamespace("default")),
		"write Secrets":                    operator.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "x", Namespace: "istio-system"}}),
		"list Pods":                        operator.List(ctx(), &corev1.PodList{}),
		"write Istio configuration": operator.Create(ctx(), istioObject("networking.istio.io/v1", "VirtualService", "x",
			map[string]any{"hosts": []any{"x"}})),
	} {
		Expect(apierrors.IsForbidden(err)).To(BeTrue(), "the operator may %s: %v", what, err)
	}
})
