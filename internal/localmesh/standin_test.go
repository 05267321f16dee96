package localmesh

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/onsi/gomega"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
)

// TestStandIn shows the stand-in mark the control plane namespace's Deployments
// available, leave other namespaces to AllNamespaces, follow a new generation through
// its watch, and publish the root certificate once the operator's istiod is available.
func TestStandIn(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set (hack/envtest-assets.sh prints it)")
	}
	g := gomega.NewWithT(t)
	env := localapi.New(&envtest.Environment{}) // loopback Services, as every test API server
	cfg, err := env.Start()
	g.Expect(err).NotTo(gomega.HaveOccurred())
	t.Cleanup(func() { _ = env.Stop() })
	c := &Cluster{ID: "c", Config: cfg}
	c.Client, err = client.New(cfg, client.Options{Scheme: scheme.Scheme})
	g.Expect(err).NotTo(gomega.HaveOccurred())
	ctx, cancel := context.WithCancel(context.Background())
	var done sync.WaitGroup
	t.Cleanup(func() { cancel(); done.Wait() })
	g.Expect(c.createNamespace(ctx, Namespace)).To(gomega.Succeed())

	istiod := deployment(Namespace, "istiod", map[string]string{render.ManagedByLabel: render.ManagedByValue}, "istiod")
	workload := deployment("default", "httpbin", map[string]string{"app": "httpbin"}, "httpbin")
	cacerts := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: Namespace, Name: "cacerts"},
		Data: map[string][]byte{ca.RootCert: []byte(testRoot)}}
	for _, o := range []client.Object{istiod, workload, cacerts} {
		g.Expect(c.Client.Create(ctx, o)).To(gomega.Succeed())
	}
	var mu sync.Mutex
	var rolled []string
	published := 0
	done.Go(func() {
		c.RunStandIn(ctx, StandInOptions{
			Logf:      t.Logf,
			RolledOut: func(d []string) { mu.Lock(); rolled = append(rolled, d...); mu.Unlock() },
			Published: func() { mu.Lock(); published++; mu.Unlock() },
		})
	})

	available := func(d *appsv1.Deployment) func(gomega.Gomega) int32 {
		return func(g gomega.Gomega) int32 {
			g.Expect(c.Client.Get(ctx, client.ObjectKeyFromObject(d), d)).To(gomega.Succeed())
			return d.Status.AvailableReplicas
		}
	}
	g.Eventually(available(istiod)).WithTimeout(30 * time.Second).Should(gomega.Equal(int32(1)))
	root := &corev1.ConfigMap{}
	g.Eventually(func() error {
		return c.Client.Get(ctx, client.ObjectKey{Namespace: Namespace, Name: RootCertConfigMap}, root)
	}).WithTimeout(30 * time.Second).Should(gomega.Succeed())
	g.Expect(root.Data).To(gomega.HaveKeyWithValue("root-cert.pem", testRoot))

	istiod.Spec.Replicas = ptr.To(int32(2)) // a new generation, seen through the watch
	g.Expect(c.Client.Update(ctx, istiod)).To(gomega.Succeed())
	g.Eventually(available(istiod)).WithTimeout(30 * time.Second).Should(gomega.Equal(int32(2)))
	g.Consistently(available(workload)).WithTimeout(time.Second).Should(gomega.BeZero(), "httpbin is not in the control plane namespace")
	mu.Lock()
	defer mu.Unlock()
	g.Expect(rolled).To(gomega.Equal([]string{"istio-system/istiod 1/1", "istio-system/istiod 2/2"}))
	g.Expect(published).To(gomega.BeNumerically(">=", 1))
}
