package testkubelet_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onsi/gomega"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshfleet/remote-istiod-operator/api/v1beta1"
	"github.com/meshfleet/remote-istiod-operator/internal/ca"
	"github.com/meshfleet/remote-istiod-operator/internal/ca/catest"
	"github.com/meshfleet/remote-istiod-operator/internal/controller"
	"github.com/meshfleet/remote-istiod-operator/internal/localapi"
	"github.com/meshfleet/remote-istiod-operator/internal/render"
	"github.com/meshfleet/remote-istiod-operator/internal/testkubelet"
)

const ns = "istio-system"

// pilotDiscovery finds the binary (see testkubelet.PilotDiscovery).
func pilotDiscovery(t *testing.T) string {
	p, skip, err := testkubelet.PilotDiscovery(filepath.Join("..", ".."))
	if skip {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// istioVersion is the release the binary is, so the objects are rendered for the istiod
// that runs them; the newest the renderer knows if it cannot tell.
func istioVersion(t *testing.T, binary string) string {
	v, err := testkubelet.IstioVersion(binary)
	if err != nil {
		t.Logf("%v; rendering for 1.%d", err, render.NewestMinor)
		return fmt.Sprintf("1.%d.0", render.NewestMinor)
	}
	return v
}

// startAPIServer starts envtest's API server with Service ClusterIPs on loopback, so
// nothing outside this machine is ever addressed, and installs the CRDs of crdDirs.
func startAPIServer(t *testing.T, crdDirs ...string) (*rest.Config, client.Client, *runtime.Scheme) {
	t.Helper()
	env := localapi.New(&envtest.Environment{CRDDirectoryPaths: crdDirs, ErrorIfCRDPathMissing: len(crdDirs) > 0})
	cfg, err := env.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return cfg, c, scheme
}

// podDir holds the pod roots: TESTKUBELET_DIR to keep them (and istiod's logs) for a
// look after the test, else a temporary directory.
func podDir(t *testing.T) string {
	if dir := os.Getenv("TESTKUBELET_DIR"); dir != "" {
		return dir
	}
	return t.TempDir()
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	gomega.NewWithT(t).Eventually(cond).WithTimeout(timeout).WithPolling(250*time.Millisecond).Should(gomega.Succeed(), what)
}

func TestIstiodRunsUnderTheTestKubelet(t *testing.T) {
	if os.Getenv("KUBEBUILDER_ASSETS") == "" {
		t.Skip("KUBEBUILDER_ASSETS is unset: run through make test or set it to $(hack/envtest-assets.sh)")
	}
	binary := pilotDiscovery(t)
	version := istioVersion(t, binary)
	start := time.Now()

	cfg, c, scheme := startAPIServer(t, filepath.Join("..", "mirror", "crds"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The control plane namespace, an application namespace, and the intermediate CA the
	// operator would issue from the mesh CA.
	for _, name := range []string{ns, "apps"} {
		if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
			t.Fatal(err)
		}
	}
	mesh := catest.MeshCACerts(24 * time.Hour)
	issuer, err := ca.NewIssuer(mesh)
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := issuer.Issue("cluster-2", 12*time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "cacerts", Namespace: ns}, Data: bundle}); err != nil {
		t.Fatal(err)
	}

	in := render.Inputs{
		ClusterID: "cluster-2", Namespace: ns, Version: version, Hub: "docker.io/istio",
		TrustDomain: "cluster.local", CACertsFingerprint: issuer.Fingerprint(),
		Entry: v1beta1.ExternalIstiodConfiguration{Replicas: ptr.To[int32](1)},
	}
	// The injector and mesh ConfigMaps of Istio's chart, as the operator gives them where
	// the mesh cluster has none to copy.
	if in.MeshSettings, err = controller.ChartMeshSettings(in); err != nil {
		t.Fatal(err)
	}
	objs, err := render.Render(in, scheme)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if err := c.Create(ctx, o); err != nil {
			t.Fatalf("creating %T %s: %v", o, o.GetName(), err)
		}
	}
	t.Logf("API server up and istiod %s applied (%d objects) in %s", version, len(objs), time.Since(start).Round(time.Millisecond))

	kl, err := testkubelet.Start(testkubelet.Options{
		Config: cfg, Binary: binary, Namespace: ns, Name: "istiod", Dir: podDir(t), GracePeriod: 5 * time.Second,
		Logf: t.Logf,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		kl.Stop()
		if t.Failed() {
			t.Logf("istiod's log:\n%s", kl.Logs())
		}
	})

	deployment := func() *appsv1.Deployment {
		d := &appsv1.Deployment{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "istiod"}, d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	available := func(d *appsv1.Deployment) bool {
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentAvailable {
				return cond.Status == corev1.ConditionTrue
			}
		}
		return false
	}

	t.Run("the Deployment becomes Available from istiod's /ready", func(t *testing.T) {
		eventually(t, 90*time.Second, "Deployment istiod Available", func() error {
			d := deployment()
			if !available(d) || d.Status.ObservedGeneration != d.Generation || d.Status.ReadyReplicas != 1 || d.Status.UpdatedReplicas != 1 {
				return errors.New(formatStatus(d))
			}
			return nil
		})
		t.Logf("Available %s after start", time.Since(start).Round(time.Millisecond))
		addrs, ok := kl.Addresses()
		if !ok {
			t.Fatal("no process")
		}
		for _, a := range []string{addrs.HTTP, addrs.GRPC, addrs.SecureGRPC, addrs.HTTPS, addrs.Monitoring, addrs.CtrlZ} {
			if !strings.HasPrefix(a, "127.0.0.1:") {
				t.Errorf("address %q is not on loopback", a)
			}
		}
	})

	t.Run("istiod publishes the root certificate", func(t *testing.T) {
		eventually(t, 30*time.Second, "ConfigMap apps/istio-ca-root-cert", func() error {
			cm := &corev1.ConfigMap{}
			if err := c.Get(ctx, client.ObjectKey{Namespace: "apps", Name: "istio-ca-root-cert"}, cm); err != nil {
				return err
			}
			if !strings.Contains(cm.Data["root-cert.pem"], strings.TrimSpace(string(mesh[ca.RootCert]))) {
				return errors.New("root-cert.pem is not the mesh root")
			}
			return nil
		})
	})

	t.Run("the published root certificate reaches istiod's optional ConfigMap volume", func(t *testing.T) {
		path := filepath.Join(kl.Root(), "var/run/secrets/istiod/ca/root-cert.pem")
		eventually(t, 10*time.Second, path, func() error {
			raw, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			if !strings.Contains(string(raw), strings.TrimSpace(string(mesh[ca.RootCert]))) {
				return errors.New("not the mesh root")
			}
			return nil
		})
	})

	t.Run("the API server reaches istiod's validation webhook through the Service", func(t *testing.T) {
		gw := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
			"metadata": map[string]any{"name": "rejected", "namespace": "apps",
				"labels":      map[string]any{"istio.io/rev": "default"},
				"annotations": map[string]any{"internal.istio.io/webhook-always-reject": "true"}},
			"spec": map[string]any{"servers": []any{map[string]any{
				"port": map[string]any{"number": int64(80), "name": "http", "protocol": "HTTP"}, "hosts": []any{"*"}}}},
		}}
		eventually(t, 30*time.Second, "an invalid Gateway denied by istiod", func() error {
			err := c.Create(ctx, gw.DeepCopy(), client.DryRunAll)
			if err == nil {
				return errors.New("accepted")
			}
			if !strings.Contains(err.Error(), "denied the request") {
				return err
			}
			t.Logf("denied: %v", err)
			return nil
		})
	})

	t.Run("istiod's ServiceAccount is allowed everything it does", func(t *testing.T) {
		for _, line := range strings.Split(kl.Logs(), "\n") {
			if strings.Contains(strings.ToLower(line), "forbidden") {
				t.Errorf("istiod was refused: %s", line)
			}
		}
	})

	t.Run("a new pod template restarts istiod", func(t *testing.T) {
		starts, root := kl.Starts(), kl.Root()
		d := deployment()
		d.Spec.Template.Annotations["example.com/restarted"] = "1"
		if err := c.Update(ctx, d); err != nil {
			t.Fatal(err)
		}
		eventually(t, 60*time.Second, "Available with the new template", func() error {
			d := deployment()
			if !available(d) || d.Status.ObservedGeneration != d.Generation || kl.Starts() != starts+1 || kl.Root() == root {
				return errors.New(formatStatus(d))
			}
			return nil
		})
	})

	t.Run("scaled to 0 the process stops, scaled back it starts again", func(t *testing.T) {
		scale := func(n int32) {
			d := deployment()
			d.Spec.Replicas = ptr.To(n)
			if err := c.Update(ctx, d); err != nil {
				t.Fatal(err)
			}
		}
		starts := kl.Starts()
		scale(0)
		eventually(t, 20*time.Second, "no process", func() error {
			if _, ok := kl.Addresses(); ok {
				return errors.New("still running")
			}
			if d := deployment(); d.Status.Replicas != 0 || d.Status.ObservedGeneration != d.Generation {
				return errors.New(formatStatus(d))
			}
			return nil
		})
		scale(1)
		// At least one start: a start whose ports another process took meanwhile
		// (istiod: "bind: address already in use") exits and is restarted, as a
		// kubelet restarts a crashed container, and counts as a second.
		eventually(t, 60*time.Second, "Available again", func() error {
			if d := deployment(); !available(d) || d.Status.ObservedGeneration != d.Generation || kl.Starts() <= starts {
				return errors.New(formatStatus(d))
			}
			return nil
		})
	})

	t.Run("deleted, the process stops", func(t *testing.T) {
		if err := c.Delete(ctx, deployment()); err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "no process", func() error {
			if _, ok := kl.Addresses(); ok {
				return errors.New("still running")
			}
			return nil
		})
	})
	t.Logf("test took %s", time.Since(start).Round(time.Millisecond))
}

func formatStatus(d *appsv1.Deployment) string {
	s := fmt.Sprintf("generation %d, observed %d, replicas %d, ready %d, available %d", d.Generation,
		d.Status.ObservedGeneration, d.Status.Replicas, d.Status.ReadyReplicas, d.Status.AvailableReplicas)
	for _, c := range d.Status.Conditions {
		s += fmt.Sprintf(", %s=%s (%s)", c.Type, c.Status, c.Reason)
	}
	return s
}
